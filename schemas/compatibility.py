"""Schema compatibility: can one version of a subject read data written with another?

The check follows Avro's schema-resolution rules (the spec's "Schema Resolution" section): a
*reader* schema reads data written with a *writer* schema when, recursively,

* both are the same primitive, or the writer's type promotes to the reader's
  (int → long, float, double; long → float, double; float → double; string ↔ bytes);
* both are records with the same unqualified name (or a reader alias of it): each reader field
  is found in the writer (by name or reader alias) and resolves, or has a default; writer fields
  the reader does not know are skipped;
* both are enums of the same name and every writer symbol is a reader symbol (or the reader
  enum has a default symbol);
* both are fixed of the same name and size; arrays (items) and maps (values) resolve;
* the writer is a union: each of its branches resolves against the reader; the reader is a
  union (and the writer is not): some reader branch resolves against the writer.

Modes, per subject, as schema registries name them (the candidate is the newest version):

==================== ========================================================================
``NONE``             no check
``BACKWARD``         the candidate reads data of the latest earlier version (the default)
``FORWARD``          the latest earlier version reads data of the candidate
``FULL``             both
``*_TRANSITIVE``     the same against every earlier version, not just the latest
==================== ========================================================================

Everything here is a pure function of schema documents; problems come back as
``Incompatibility`` values naming the field path, the version pair and the rule broken. Rule
names are those of Confluent's checker (``READER_FIELD_MISSING_DEFAULT_VALUE``, ...).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import fastavro

from schemas.errors import ConfigError

COMPATIBILITY_FILE = "compatibility.json"
ROOT_PATH = "(root)"


class Mode(StrEnum):
    NONE = "NONE"
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"

    @property
    def transitive(self) -> bool:
        return self.value.endswith("_TRANSITIVE")

    @property
    def backward(self) -> bool:
        return self.value.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        return self.value.startswith(("FORWARD", "FULL"))


DEFAULT_MODE = Mode.BACKWARD


class Rule(StrEnum):
    """Which resolution rule a writer/reader pair breaks."""

    TYPE_MISMATCH = "TYPE_MISMATCH"
    NAME_MISMATCH = "NAME_MISMATCH"
    FIXED_SIZE_MISMATCH = "FIXED_SIZE_MISMATCH"
    MISSING_ENUM_SYMBOLS = "MISSING_ENUM_SYMBOLS"
    READER_FIELD_MISSING_DEFAULT_VALUE = "READER_FIELD_MISSING_DEFAULT_VALUE"
    MISSING_UNION_BRANCH = "MISSING_UNION_BRANCH"


class CompatibilityError(ConfigError, ValueError):
    """A schema or the compatibility file cannot be read: an operator must fix it."""


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """One way a reader cannot read a writer's data."""

    path: str  # field path in the reader: "customer.address.zip", "items[]", "attrs{}"
    rule: Rule
    detail: str
    reader_version: str | None = None  # "v3", or "candidate"
    writer_version: str | None = None

    def __str__(self) -> str:
        pair = ""
        if self.reader_version is not None and self.writer_version is not None:
            pair = f"{self.reader_version} cannot read {self.writer_version} data: "
        return f"{pair}{self.path}: {self.detail} ({self.rule.value})"

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "rule": self.rule.value,
            "detail": self.detail,
            "reader": self.reader_version,
            "writer": self.writer_version,
            "message": str(self),
        }


Schema = dict[str, Any] | list[Any] | str

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_PROMOTIONS: dict[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}


@dataclass(frozen=True, slots=True)
class _Parsed:
    root: Any
    names: dict[str, Any]


def _parse(schema: Schema) -> _Parsed:
    names: dict[str, Any] = {}
    try:
        root = fastavro.parse_schema(schema, named_schemas=names, _write_hint=False)
    except (fastavro.schema.SchemaParseException, ValueError, TypeError, KeyError) as exc:
        raise CompatibilityError(f"bad schema: {exc}") from exc
    return _Parsed(root, names)


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _type_name(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return str(schema["type"])
    return str(schema)


def _describe(schema: Any) -> str:
    if isinstance(schema, dict) and "name" in schema:
        return f"{schema['type']} {_short(schema['name'])}"
    if isinstance(schema, list):
        return "union [" + ", ".join(_describe(b) for b in schema) + "]"
    return _type_name(schema)


@dataclass(slots=True)
class _Resolver:
    reader: _Parsed
    writer: _Parsed
    seen: set[tuple[str, str]] = field(default_factory=set)

    def deref(self, schema: Any, side: _Parsed) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            return side.names[schema]
        if isinstance(schema, dict) and schema.get("type") in _PRIMITIVES:
            return schema["type"]  # logical types resolve as their underlying type
        return schema

    def check(self, reader: Any, writer: Any, path: str) -> list[Incompatibility]:
        reader = self.deref(reader, self.reader)
        writer = self.deref(writer, self.writer)
        if isinstance(writer, list):
            problems: list[Incompatibility] = []
            for branch in writer:
                problems += self._branch(reader, branch, path)
            return problems
        if isinstance(reader, list):
            return self._branch(reader, writer, path)
        return self._same_kind(reader, writer, path)

    def _branch(self, reader: Any, writer: Any, path: str) -> list[Incompatibility]:
        """A (non-union) writer branch against the reader, which may be a union."""
        writer = self.deref(writer, self.writer)
        if not isinstance(reader, list):
            return self.check(reader, writer, path)
        for candidate in reader:
            if not self.check(candidate, writer, path):
                return []
        return [
            _problem(
                path,
                Rule.MISSING_UNION_BRANCH,
                f"writer type {_describe(writer)} has no matching branch in reader "
                f"{_describe(reader)}",
            )
        ]

    def _same_kind(self, reader: Any, writer: Any, path: str) -> list[Incompatibility]:
        r_type, w_type = _type_name(reader), _type_name(writer)
        if r_type in _PRIMITIVES or w_type in _PRIMITIVES:
            if r_type == w_type or r_type in _PROMOTIONS.get(w_type, frozenset()):
                return []
            return [_mismatch(path, reader, writer)]
        if r_type != w_type:
            return [_mismatch(path, reader, writer)]
        if r_type == "array":
            return self.check(reader["items"], writer["items"], f"{path}[]")
        if r_type == "map":
            return self.check(reader["values"], writer["values"], f"{path}{{}}")
        name_problem = _name_problem(reader, writer, path)
        if name_problem is not None:
            return [name_problem]
        if r_type == "fixed":
            if reader["size"] != writer["size"]:
                detail = f"writer size {writer['size']}, reader size {reader['size']}"
                return [_problem(path, Rule.FIXED_SIZE_MISMATCH, detail)]
            return []
        if r_type == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and "default" not in reader:
                detail = (
                    f"reader enum {_short(reader['name'])} lacks writer symbol(s) "
                    + ", ".join(missing)
                )
                return [_problem(path, Rule.MISSING_ENUM_SYMBOLS, detail)]
            return []
        return self._record(reader, writer, path)

    def _record(self, reader: Any, writer: Any, path: str) -> list[Incompatibility]:
        pair = (reader["name"], writer["name"])
        if pair in self.seen:  # a recursive type: this pair is being checked further up
            return []
        self.seen.add(pair)
        writer_fields = {f["name"]: f for f in writer["fields"]}
        problems: list[Incompatibility] = []
        for reader_field in reader["fields"]:
            name = reader_field["name"]
            here = name if path == ROOT_PATH else f"{path}.{name}"
            match = next(
                (
                    writer_fields[n]
                    for n in (name, *reader_field.get("aliases", ()))
                    if n in writer_fields
                ),
                None,
            )
            if match is not None:
                problems += self.check(reader_field["type"], match["type"], here)
            elif "default" not in reader_field:
                problems.append(
                    _problem(
                        here,
                        Rule.READER_FIELD_MISSING_DEFAULT_VALUE,
                        "reader field is not in the writer's data and has no default",
                    )
                )
        self.seen.discard(pair)
        return problems


def _problem(path: str, rule: Rule, detail: str) -> Incompatibility:
    return Incompatibility(path, rule, detail)


def _mismatch(path: str, reader: Any, writer: Any) -> Incompatibility:
    detail = f"writer type {_describe(writer)} does not resolve to reader type {_describe(reader)}"
    return _problem(path, Rule.TYPE_MISMATCH, detail)


def _name_problem(reader: Any, writer: Any, path: str) -> Incompatibility | None:
    writer_name = _short(writer["name"])
    accepted = {_short(reader["name"]), *(_short(a) for a in reader.get("aliases", ()))}
    if writer_name in accepted:
        return None
    detail = (
        f"writer {writer['type']} {writer_name} is not reader {reader['type']} "
        f"{_short(reader['name'])} (nor one of its aliases)"
    )
    return _problem(path, Rule.NAME_MISMATCH, detail)


# -- public API ------------------------------------------------------------------------------
def reader_problems(reader: Schema, writer: Schema) -> list[Incompatibility]:
    """Why ``reader`` cannot read data written with ``writer`` (empty: it can)."""
    parsed_reader, parsed_writer = _parse(reader), _parse(writer)
    resolver = _Resolver(parsed_reader, parsed_writer)
    return resolver.check(parsed_reader.root, parsed_writer.root, ROOT_PATH)


def can_read(reader: Schema, writer: Schema) -> bool:
    return not reader_problems(reader, writer)


def check_candidate(
    candidate: Schema,
    earlier: Sequence[tuple[str, Schema]],
    mode: Mode,
    *,
    candidate_label: str = "candidate",
) -> list[Incompatibility]:
    """Problems of ``candidate`` against ``earlier`` versions (oldest first, labelled "v1"...)
    under ``mode``. Empty when compatible (and always under ``NONE``)."""
    if mode is Mode.NONE or not earlier:
        return []
    against = earlier if mode.transitive else earlier[-1:]
    problems: list[Incompatibility] = []
    for label, schema in reversed(against):  # newest first: the likeliest culprit
        if mode.backward:
            problems += _labelled(reader_problems(candidate, schema), candidate_label, label)
        if mode.forward:
            problems += _labelled(reader_problems(schema, candidate), label, candidate_label)
    return problems


def check_chain(versions: Sequence[tuple[str, Schema]], mode: Mode) -> list[Incompatibility]:
    """Every version of a subject (oldest first) against the ones before it, under ``mode``."""
    problems: list[Incompatibility] = []
    for n in range(1, len(versions)):
        label, schema = versions[n]
        problems += check_candidate(schema, versions[:n], mode, candidate_label=label)
    return problems


def _labelled(
    problems: Iterable[Incompatibility], reader: str, writer: str
) -> list[Incompatibility]:
    return [replace(p, reader_version=reader, writer_version=writer) for p in problems]


# -- per-subject modes -----------------------------------------------------------------------
def parse_modes(doc: Any, where: str = COMPATIBILITY_FILE) -> tuple[Mode, dict[str, Mode]]:
    """``{"default": "BACKWARD", "subjects": {"<source>/<event_type>": "FULL"}}`` → modes."""
    if not isinstance(doc, dict):
        raise CompatibilityError(f"{where}: expected a JSON object")
    unknown = sorted(k for k in doc if k not in ("default", "subjects") and not k.startswith("_"))
    if unknown:
        raise CompatibilityError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: default, subjects"
        )
    default = _mode(doc.get("default", DEFAULT_MODE.value), f"{where}: default")
    subjects = doc.get("subjects", {})
    if not isinstance(subjects, dict):
        raise CompatibilityError(f"{where}: `subjects` must be an object of subject → mode")
    modes = {subject: _mode(value, f"{where}: {subject}") for subject, value in subjects.items()}
    return default, modes


def _mode(value: Any, where: str) -> Mode:
    try:
        return Mode(str(value).upper())
    except ValueError:
        known = ", ".join(m.value for m in Mode)
        raise CompatibilityError(f"{where}: unknown mode {value!r}; known: {known}") from None


@dataclass(frozen=True, slots=True)
class SubjectModes:
    """The compatibility mode of each subject (``<source>/<event_type>``)."""

    default: Mode = DEFAULT_MODE
    subjects: Mapping[str, Mode] = field(default_factory=dict)

    def mode(self, subject: str) -> Mode:
        return self.subjects.get(subject, self.default)

    @classmethod
    def load(cls, folder: Path) -> SubjectModes:
        file = folder / COMPATIBILITY_FILE
        if not file.is_file():
            return cls()
        try:
            doc = json.loads(file.read_text("utf-8"))
        except ValueError as exc:
            raise CompatibilityError(f"{file}: not JSON: {exc}") from exc
        default, subjects = parse_modes(doc, str(file))
        return cls(default, subjects)
