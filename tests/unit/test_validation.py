"""Payload validation: JSON payloads against Avro record schemas, and the validator's policy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.envelope import Event, Reason, Rejection
from schemas.registry import SchemaRegistry
from schemas.validation import Mismatch, PayloadValidator, parsed_names, validate_payload

ORDER = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "qty", "type": "int"},
        {"name": "total", "type": "long"},
        {"name": "price", "type": "double"},
        {"name": "weight", "type": "float"},
        {"name": "paid", "type": "boolean"},
        {"name": "coupon", "type": ["null", "string"], "default": None},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
        {
            "name": "lines",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Line",
                    "fields": [{"name": "sku", "type": "string"}, {"name": "n", "type": "int"}],
                },
            },
        },
        {"name": "tags", "type": {"type": "map", "values": "string"}, "default": {}},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "sig", "type": "bytes", "default": ""},
        {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}, "default": "abcd"},
        {"name": "again", "type": ["null", "shop.Status"], "default": None},
        {"name": "ship_to", "type": ["null", "Line"], "default": None},
    ],
}

GOOD: dict[str, Any] = {
    "order_id": "o-1",
    "qty": 2,
    "total": 2**40,
    "price": 9,
    "weight": 1.5,
    "paid": True,
    "status": "NEW",
    "lines": [{"sku": "a", "n": 1}],
    "ts": 1735430399000,
}


def with_(**changes: Any) -> dict[str, Any]:
    doc = {**GOOD, **changes}
    return {k: v for k, v in doc.items() if v is not ...}


CASES: list[tuple[str, dict[str, Any], Mismatch | None]] = [
    ("minimal valid", GOOD, None),
    (
        "all optional fields given",
        with_(
            coupon="X",
            tags={"a": "b"},
            sig="\x00\xff",
            hash="wxyz",
            again="PAID",
            ship_to={"sku": "s", "n": 3},
        ),
        None,
    ),
    ("union in Avro JSON encoding", with_(coupon={"string": "X"}), None),
    ("integral float for int", with_(qty=2.0), None),
    (
        "missing required",
        with_(qty=...),
        Mismatch("payload.qty", "missing (required: the field has no default)"),
    ),
    ("unknown field", with_(colour="red"), Mismatch("payload.colour", "not a field of the schema")),
    (
        "string for int",
        with_(qty="2"),
        Mismatch("payload.qty", "expected an integer (int), got string '2'"),
    ),
    (
        "bool is not int",
        with_(qty=True),
        Mismatch("payload.qty", "expected an integer (int), got boolean True"),
    ),
    (
        "int out of range",
        with_(qty=2**31),
        Mismatch("payload.qty", "2147483648 is out of range for int [-2147483648, 2147483647]"),
    ),
    (
        "long out of range",
        with_(total=2**63),
        Mismatch("payload.total", f"{2**63} is out of range for long [{-(2**63)}, {2**63 - 1}]"),
    ),
    (
        "fractional for long",
        with_(total=1.5),
        Mismatch("payload.total", "expected an integer (long), got number 1.5"),
    ),
    (
        "float out of range",
        with_(weight=1e39),
        Mismatch("payload.weight", "1e+39 is out of range for float"),
    ),
    (
        "string for double",
        with_(price="9"),
        Mismatch("payload.price", "expected a number, got string '9'"),
    ),
    (
        "null for boolean",
        with_(paid=None),
        Mismatch("payload.paid", "expected a boolean, got null None"),
    ),
    (
        "bad enum symbol",
        with_(status="LOST"),
        Mismatch("payload.status", "'LOST' is not a symbol of enum Status (NEW, PAID)"),
    ),
    (
        "nested array item",
        with_(lines=[{"sku": "a", "n": 1}, {"sku": "b", "n": "x"}]),
        Mismatch("payload.lines[1].n", "expected an integer (int), got string 'x'"),
    ),
    (
        "array is not array",
        with_(lines={}),
        Mismatch("payload.lines", "expected an array, got object {}"),
    ),
    (
        "map value",
        with_(tags={"a": 1}),
        Mismatch('payload.tags["a"]', "expected a string, got integer 1"),
    ),
    (
        "union fits no branch",
        with_(coupon=5),
        Mismatch("payload.coupon", "integer 5 fits no branch of [null, string]"),
    ),
    (
        "nullable record: problem inside the record",
        with_(ship_to={"sku": "s"}),
        Mismatch("payload.ship_to.n", "missing (required: the field has no default)"),
    ),
    (
        "fixed size",
        with_(hash="abc"),
        Mismatch("payload.hash", "fixed Hash needs 4 characters, got 3"),
    ),
    (
        "bytes must be text",
        with_(sig=[1]),
        Mismatch("payload.sig", "expected a string (bytes), got array [1]"),
    ),
    (
        "named enum by reference",
        with_(again="LOST"),
        Mismatch("payload.again", "string 'LOST' fits no branch of [null, shop.Status]"),
    ),
    (
        "logical type checked as its base",
        with_(ts="2025-12-28T00:00:00Z"),
        Mismatch("payload.ts", "expected an integer (long), got string '2025-12-28T00:00:00Z'"),
    ),
]


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    reg = SchemaRegistry()
    reg.register("shop", "order", 1, ORDER)
    return reg


@pytest.mark.parametrize(("payload", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_payloads(
    registry: SchemaRegistry, payload: dict[str, Any], expected: Mismatch | None
) -> None:
    entry = registry.get("shop", "order")
    assert entry is not None
    assert validate_payload(payload, entry.parsed, parsed_names(entry.parsed)) == expected


def test_plain_schema_without_names() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}
    assert validate_payload({"a": 1}, schema) is None
    assert validate_payload({"a": None}, schema) == Mismatch(
        "payload.a", "expected an integer (int), got null None"
    )
    assert (
        str(validate_payload([], schema)) == "payload: expected an object (record R), got array []"
    )


V1 = {"type": "record", "name": "Ping", "fields": [{"name": "n", "type": "int"}]}
V2 = {
    "type": "record",
    "name": "Ping",
    "fields": [
        {"name": "n", "type": "long"},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}


def event(payload: dict[str, Any], source: str = "app", event_type: str = "ping") -> Event:
    return Event(
        source=source,
        event_type=event_type,
        entity_id="e-1",
        event_time=datetime(2025, 12, 28, tzinfo=UTC),
        payload=payload,
    )


@pytest.fixture
def validator() -> PayloadValidator:
    reg = SchemaRegistry()
    v1 = reg.register("app", "ping", 1, V1)
    v2 = reg.register("app", "ping", 2, V2)
    assert v1.fingerprint != v2.fingerprint
    return PayloadValidator(reg, required_sources={"strict"})


def test_older_version_fits_when_newest_does_not() -> None:
    registry = SchemaRegistry()
    as_int = registry.register("a", "b", 1, V1)
    as_text = registry.register(
        "a", "b", 2, {"type": "record", "name": "Ping", "fields": [{"name": "n", "type": "string"}]}
    )
    checker = PayloadValidator(registry)
    assert checker.check(event({"n": "x"}, "a", "b")) == as_text.fingerprint
    assert checker.check(event({"n": 1}, "a", "b")) == as_int.fingerprint  # an older writer


def test_fit_carries_newest_fingerprint(validator: PayloadValidator) -> None:
    registry = SchemaRegistry()
    registry.register("app", "ping", 1, V1)
    v2 = registry.register("app", "ping", 2, V2)
    assert validator.check(event({"n": 1})) == v2.fingerprint  # v1 fits too: newest wins
    assert validator.check(event({"n": 2**40, "note": "x"})) == v2.fingerprint


def test_misfit_is_schema_mismatch_naming_field_and_latest_version(
    validator: PayloadValidator,
) -> None:
    verdict = validator.check(event({"n": "one"}))
    assert isinstance(verdict, Rejection)
    assert verdict.reason is Reason.SCHEMA_MISMATCH
    assert verdict.detail == (
        "payload.n: expected an integer (long), got string 'one' (schema app/ping/v2)"
    )
    assert (verdict.source, verdict.event_type, verdict.entity_id) == ("app", "ping", "e-1")


def test_unregistered_event_type_follows_source_policy(validator: PayloadValidator) -> None:
    assert validator.check(event({"anything": 1}, source="app", event_type="other")) is None
    verdict = validator.check(event({}, source="strict", event_type="other"))
    assert isinstance(verdict, Rejection)
    assert verdict.reason is Reason.UNKNOWN_SCHEMA
    assert "strict/other" in verdict.detail
