"""Compatibility: Avro schema resolution per pair, then the modes over version chains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schemas.compatibility import (
    CompatibilityError,
    Mode,
    Rule,
    SubjectModes,
    check_candidate,
    check_chain,
    parse_modes,
    reader_problems,
)


def record(*fields: dict[str, Any], name: str = "Order", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "shop", "fields": list(fields), **extra}


def f(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Color", "symbols": list(symbols), **extra}


BASE = record(f("id", "string"), f("amount", "int"))

# (reader, writer, expected problems as (path, rule); empty: the reader reads the writer's data)
PAIRS: list[tuple[str, Any, Any, list[tuple[str, Rule]]]] = [
    ("identical", BASE, BASE, []),
    (
        "reader adds field with default",
        record(f("id", "string"), f("amount", "int"), f("note", ["null", "string"], default=None)),
        BASE,
        [],
    ),
    (
        "reader adds field without default",
        record(f("id", "string"), f("amount", "int"), f("note", "string")),
        BASE,
        [("note", Rule.READER_FIELD_MISSING_DEFAULT_VALUE)],
    ),
    ("reader drops a field", record(f("id", "string")), BASE, []),
    ("int -> long", record(f("id", "string"), f("amount", "long")), BASE, []),
    ("int -> float", record(f("id", "string"), f("amount", "float")), BASE, []),
    ("int -> double", record(f("id", "string"), f("amount", "double")), BASE, []),
    ("long -> double", record(f("x", "double")), record(f("x", "long")), []),
    ("float -> double", record(f("x", "double")), record(f("x", "float")), []),
    (
        "long -> int narrows",
        record(f("x", "int")),
        record(f("x", "long")),
        [("x", Rule.TYPE_MISMATCH)],
    ),
    (
        "double -> float narrows",
        record(f("x", "float")),
        record(f("x", "double")),
        [("x", Rule.TYPE_MISMATCH)],
    ),
    ("string -> bytes", record(f("x", "bytes")), record(f("x", "string")), []),
    ("bytes -> string", record(f("x", "string")), record(f("x", "bytes")), []),
    (
        "string -> int",
        record(f("x", "int")),
        record(f("x", "string")),
        [("x", Rule.TYPE_MISMATCH)],
    ),
    (
        "logical type resolves as its base",
        record(f("ts", "long")),
        record(f("ts", {"type": "long", "logicalType": "timestamp-millis"})),
        [],
    ),
    ("enum adds symbol", record(f("c", enum("R", "G", "B"))), record(f("c", enum("R", "G"))), []),
    (
        "enum drops symbol",
        record(f("c", enum("R"))),
        record(f("c", enum("R", "G"))),
        [("c", Rule.MISSING_ENUM_SYMBOLS)],
    ),
    (
        "enum drops symbol, reader has default",
        record(f("c", enum("R", "U", default="U"))),
        record(f("c", enum("R", "G"))),
        [],
    ),
    (
        "enum renamed",
        record(f("c", {"type": "enum", "name": "Hue", "symbols": ["R"]})),
        record(f("c", enum("R"))),
        [("c", Rule.NAME_MISMATCH)],
    ),
    (
        "record renamed",
        record(f("id", "string"), name="Purchase"),
        record(f("id", "string")),
        [("(root)", Rule.NAME_MISMATCH)],
    ),
    (
        "record renamed with alias",
        record(f("id", "string"), name="Purchase", aliases=["Order"]),
        record(f("id", "string")),
        [],
    ),
    (
        "field renamed with alias",
        record(f("order_id", "string", aliases=["id"]), f("amount", "int")),
        BASE,
        [],
    ),
    (
        "field renamed without alias",
        record(f("order_id", "string"), f("amount", "int")),
        BASE,
        [("order_id", Rule.READER_FIELD_MISSING_DEFAULT_VALUE)],
    ),
    ("null -> nullable union", record(f("x", ["null", "string"])), record(f("x", "string")), []),
    (
        "nullable union -> required",
        record(f("x", "string")),
        record(f("x", ["null", "string"])),
        [("x", Rule.TYPE_MISMATCH)],
    ),
    (
        "union gains a branch",
        record(f("x", ["null", "int", "string"])),
        record(f("x", ["null", "int"])),
        [],
    ),
    (
        "union loses a branch",
        record(f("x", ["null", "int"])),
        record(f("x", ["null", "int", "string"])),
        [("x", Rule.MISSING_UNION_BRANCH)],
    ),
    (
        "union branch promoted",
        record(f("x", ["null", "long"])),
        record(f("x", ["null", "int"])),
        [],
    ),
    (
        "array items promoted",
        record(f("xs", {"type": "array", "items": "long"})),
        record(f("xs", {"type": "array", "items": "int"})),
        [],
    ),
    (
        "array items narrowed",
        record(f("xs", {"type": "array", "items": "int"})),
        record(f("xs", {"type": "array", "items": "long"})),
        [("xs[]", Rule.TYPE_MISMATCH)],
    ),
    (
        "map values changed",
        record(f("m", {"type": "map", "values": "int"})),
        record(f("m", {"type": "map", "values": "string"})),
        [("m{}", Rule.TYPE_MISMATCH)],
    ),
    (
        "array becomes map",
        record(f("xs", {"type": "map", "values": "int"})),
        record(f("xs", {"type": "array", "items": "int"})),
        [("xs", Rule.TYPE_MISMATCH)],
    ),
    (
        "nested record gains required field",
        record(f("addr", record(f("zip", "string"), f("city", "string"), name="Address"))),
        record(f("addr", record(f("zip", "string"), name="Address"))),
        [("addr.city", Rule.READER_FIELD_MISSING_DEFAULT_VALUE)],
    ),
    (
        "array of nested records, field narrowed",
        record(f("items", {"type": "array", "items": record(f("qty", "int"), name="Line")})),
        record(f("items", {"type": "array", "items": record(f("qty", "long"), name="Line")})),
        [("items[].qty", Rule.TYPE_MISMATCH)],
    ),
    (
        "fixed size changed",
        record(f("h", {"type": "fixed", "name": "Hash", "size": 16})),
        record(f("h", {"type": "fixed", "name": "Hash", "size": 32})),
        [("h", Rule.FIXED_SIZE_MISMATCH)],
    ),
    (
        "named type referenced by name",
        record(f("a", enum("R", "G")), f("b", "shop.Color")),
        record(f("a", enum("R", "G")), f("b", "shop.Color")),
        [],
    ),
    (
        "named reference loses symbol",
        record(f("a", enum("R")), f("b", "shop.Color")),
        record(f("a", enum("R", "G")), f("b", "shop.Color")),
        [("a", Rule.MISSING_ENUM_SYMBOLS), ("b", Rule.MISSING_ENUM_SYMBOLS)],
    ),
    (
        "recursive type",
        record(f("v", "int"), f("next", ["null", "shop.Node"]), name="Node"),
        record(f("v", "int"), f("next", ["null", "shop.Node"]), name="Node"),
        [],
    ),
    (
        "recursive type narrowed",
        record(f("v", "int"), f("next", ["null", "shop.Node"]), name="Node"),
        record(f("v", "long"), f("next", ["null", "shop.Node"]), name="Node"),
        [("v", Rule.TYPE_MISMATCH)],  # reported once, not again at each level of `next`
    ),
]


@pytest.mark.parametrize(
    ("reader", "writer", "expected"), [p[1:] for p in PAIRS], ids=[p[0] for p in PAIRS]
)
def test_resolution_pairs(reader: Any, writer: Any, expected: list[tuple[str, Rule]]) -> None:
    problems = reader_problems(reader, writer)
    assert [(p.path, p.rule) for p in problems] == expected


def test_problem_names_the_types_and_rule() -> None:
    [problem] = reader_problems(record(f("x", "int")), record(f("x", "long")))
    assert problem.detail == "writer type long does not resolve to reader type int"
    assert str(problem) == "x: writer type long does not resolve to reader type int (TYPE_MISMATCH)"


def test_bad_schema_is_an_error() -> None:
    with pytest.raises(CompatibilityError):
        reader_problems({"type": "nope"}, BASE)


V1 = record(f("id", "string"))
V2_OPTIONAL = record(f("id", "string"), f("note", ["null", "string"], default=None))
V2_REQUIRED = record(f("id", "string"), f("note", "string"))
V2_DROPPED = record(f("other", "string", default=""))

# (mode, earlier versions, candidate, compatible?)
MODES: list[tuple[Mode, list[Any], Any, bool]] = [
    (Mode.NONE, [V1], record(f("id", "int")), True),
    (Mode.BACKWARD, [V1], V2_OPTIONAL, True),
    (Mode.BACKWARD, [V1], V2_REQUIRED, False),  # new reader cannot default `note`
    (Mode.FORWARD, [V1], V2_REQUIRED, True),  # old reader skips `note`
    (Mode.FORWARD, [V1], V2_DROPPED, False),  # old reader needs `id`
    (Mode.BACKWARD, [V1], V2_DROPPED, True),
    (Mode.FULL, [V1], V2_OPTIONAL, True),
    (Mode.FULL, [V1], V2_REQUIRED, False),
    (Mode.FULL, [V1], V2_DROPPED, False),
    # transitive: v3 (int) is fine against v2 (int) but not against v1 (string)
    (
        Mode.BACKWARD,
        [record(f("x", "string")), record(f("x", "int"))],
        record(f("x", "long")),
        True,
    ),
    (
        Mode.BACKWARD_TRANSITIVE,
        [record(f("x", "string")), record(f("x", "int"))],
        record(f("x", "long")),
        False,
    ),
    (Mode.FORWARD, [record(f("x", "long")), record(f("x", "double"))], record(f("x", "int")), True),
    (
        Mode.FULL_TRANSITIVE,
        [V1, V2_OPTIONAL],
        record(f("id", "string"), f("note", ["null", "string"], default=None)),
        True,
    ),
]


@pytest.mark.parametrize(("mode", "earlier", "candidate", "compatible"), MODES)
def test_modes(mode: Mode, earlier: list[Any], candidate: Any, compatible: bool) -> None:
    chain = [(f"v{n}", s) for n, s in enumerate(earlier, start=1)]
    assert (not check_candidate(candidate, chain, mode)) is compatible


def test_problem_names_the_version_pair() -> None:
    chain = [("v1", record(f("x", "string"))), ("v2", record(f("x", "int")))]
    [problem] = check_candidate(record(f("x", "long")), chain, Mode.BACKWARD_TRANSITIVE)
    assert (problem.reader_version, problem.writer_version) == ("candidate", "v1")
    assert str(problem).startswith("candidate cannot read v1 data: x: writer type string")


def test_forward_problem_has_old_version_as_reader() -> None:
    [problem] = check_candidate(V2_DROPPED, [("v1", V1)], Mode.FORWARD)
    assert (problem.reader_version, problem.writer_version, problem.path) == (
        "v1",
        "candidate",
        "id",
    )


def test_chain_checks_each_version_against_its_predecessors() -> None:
    chain = [("v1", V1), ("v2", V2_OPTIONAL), ("v3", V2_DROPPED), ("v4", V1)]
    problems = check_chain(chain, Mode.FULL)
    assert {(p.reader_version, p.writer_version, p.path) for p in problems} == {
        ("v2", "v3", "id"),  # FORWARD half: v2 cannot read v3 data
        ("v4", "v3", "id"),  # BACKWARD half: v4 cannot read v3 data
    }


def test_shipped_sample_registry_chain_is_full_compatible() -> None:
    folder = Path(__file__).parents[2] / "pik" / "demo_registry" / "orders-service" / "order_placed"
    chain = [(p.stem, json.loads(p.read_text())) for p in sorted(folder.glob("v*.avsc"))]
    assert len(chain) >= 2
    assert check_chain(chain, Mode.FULL_TRANSITIVE) == []


def test_modes_file(tmp_path: Path) -> None:
    assert SubjectModes.load(tmp_path).mode("a/b") is Mode.BACKWARD
    (tmp_path / "compatibility.json").write_text(
        json.dumps({"_doc": "x", "default": "full", "subjects": {"a/b": "NONE"}})
    )
    modes = SubjectModes.load(tmp_path)
    assert modes.mode("a/b") is Mode.NONE
    assert modes.mode("c/d") is Mode.FULL


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "expected a JSON object"),
        ({"default": "SIDEWAYS"}, "unknown mode 'SIDEWAYS'"),
        ({"subjects": {"a/b": "X"}}, "a/b: unknown mode"),
        ({"subject": {}}, "unknown key(s) subject"),
        ({"subjects": []}, "must be an object"),
    ],
)
def test_bad_modes_file(doc: Any, message: str) -> None:
    with pytest.raises(CompatibilityError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_modes(doc)
