"""Payload validation at ingest: does a JSON payload fit its registered Avro schema?

A payload is checked as the JSON form of Avro data would be (plain JSON, as producers send it):

* record: a JSON object; every schema field present, or absent with a default; no field the
  schema does not name (a misspelt field is a producer bug, not data to keep quietly);
* union: the value fits one branch (``null`` for a ``"null"`` branch); Avro's own JSON encoding
  of a non-null branch, ``{"<branch type>": value}``, is accepted too;
* enum: one of its symbols; array / map: a JSON array / object whose items / values fit;
* int / long: a JSON integer in the 32- / 64-bit signed range; float / double: any JSON number
  (within float range for ``float``); boolean: ``true`` / ``false``; string: text;
  bytes: text; fixed: text of exactly ``size`` characters; null: ``null``.
  Logical types are checked as their underlying type.

``validate_payload`` returns ``None`` or a ``Mismatch(path, problem)`` naming the first field that
does not fit. ``PayloadValidator`` applies the registry and the per-source policy to an event:
the payload must fit the latest registered version that it can fit (the fingerprint of that
version is archived with it), else it is ``REJECTED`` with reason ``schema_mismatch``; an event
type with no registered schema is accepted, or ``REJECTED`` as ``unknown_schema`` for sources
that require schemas.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from schemas.envelope import Event, Reason, Rejection
from schemas.registry import SchemaEntry, SchemaRegistry

INT_RANGE = (-(2**31), 2**31 - 1)
LONG_RANGE = (-(2**63), 2**63 - 1)
FLOAT_MAX = 3.4028234663852886e38
ROOT = "payload"
MAX_SHOWN = 40  # characters of a bad value quoted in a problem


class Mismatch(NamedTuple):
    path: str  # "payload.items[2].price", "payload.attrs[\"k\"]"
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def validate_payload(
    payload: Any, schema: Any, names: dict[str, Any] | None = None
) -> Mismatch | None:
    """The first place ``payload`` does not fit ``schema`` (a parsed or plain Avro schema)."""
    return _Checker(names if names is not None else {}).check(payload, schema, ROOT)


def parsed_names(parsed: Any) -> dict[str, Any]:
    """Named types of a fastavro-parsed schema by full name (for references inside it)."""
    names: dict[str, Any] = {}
    _collect(parsed, names)
    return names


def _collect(schema: Any, names: dict[str, Any]) -> None:
    if isinstance(schema, list):
        for branch in schema:
            _collect(branch, names)
    elif isinstance(schema, dict):
        if "name" in schema and schema["name"] not in names:
            names[schema["name"]] = schema
        for f in schema.get("fields", ()):
            _collect(f["type"], names)
        for key in ("items", "values"):
            if key in schema:
                _collect(schema[key], names)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class _Checker:
    def __init__(self, names: dict[str, Any]) -> None:
        self._names = names
        self._by_type: dict[str, Callable[[Any, Any, str], Mismatch | None]] = {
            "record": self._record,
            "error": self._record,
            "array": self._array,
            "map": self._map,
            "enum": self._enum,
            "fixed": self._fixed,
            "null": self._null,
            "boolean": self._boolean,
            "int": self._int,
            "long": self._long,
            "float": self._float,
            "double": self._double,
            "string": self._string,
            "bytes": self._bytes,
        }

    def check(self, value: Any, schema: Any, path: str) -> Mismatch | None:
        if isinstance(schema, str) and schema in self._names:
            schema = self._names[schema]
        if isinstance(schema, list):
            return self._union(value, schema, path)
        kind = schema["type"] if isinstance(schema, dict) else schema
        if isinstance(kind, dict | list):  # {"type": {...}} wrapping
            return self.check(value, kind, path)
        if kind in self._names:
            return self.check(value, self._names[kind], path)
        method = self._by_type.get(kind)
        if method is None:
            return Mismatch(path, f"schema type {kind!r} is not known")
        return method(value, schema, path)

    def _expect(self, value: Any, wanted: str, path: str) -> Mismatch:
        return Mismatch(path, f"expected {wanted}, got {_json_kind(value)} {_show(value)}")

    # -- complex types -----------------------------------------------------------------------
    def _record(self, value: Any, schema: dict[str, Any], path: str) -> Mismatch | None:
        if not isinstance(value, dict):
            return self._expect(value, f"an object (record {schema['name']})", path)
        known = {f["name"] for f in schema["fields"]}
        for f in schema["fields"]:
            here = f"{path}.{f['name']}"
            if f["name"] not in value:
                if "default" in f:
                    continue
                return Mismatch(here, "missing (required: the field has no default)")
            problem = self.check(value[f["name"]], f["type"], here)
            if problem is not None:
                return problem
        extra = sorted(k for k in value if k not in known)
        if extra:
            return Mismatch(f"{path}.{extra[0]}", "not a field of the schema")
        return None

    def _union(self, value: Any, branches: list[Any], path: str) -> Mismatch | None:
        problems = [self.check(value, b, path) for b in branches]
        if any(p is None for p in problems):
            return None
        wrapped = self._wrapped_branch(value, branches, path)
        if wrapped is not None:
            return wrapped if isinstance(wrapped, Mismatch) else None
        nested = [p for p in problems if p is not None and p.path != path]
        if len(branches) == 2 and "null" in branches and nested:
            return nested[0]  # the one real branch's own, more precise problem
        types = ", ".join(_branch_name(b) for b in branches)
        return Mismatch(path, f"{_json_kind(value)} {_show(value)} fits no branch of [{types}]")

    def _wrapped_branch(self, value: Any, branches: list[Any], path: str) -> Mismatch | bool | None:
        """Avro's JSON union encoding ``{"long": 3}``: None when ``value`` is not one."""
        if not isinstance(value, dict) or len(value) != 1:
            return None
        [(key, inner)] = value.items()
        for branch in branches:
            if _branch_name(branch) == key or _short(_branch_name(branch)) == key:
                return self.check(inner, branch, f"{path}.{key}") or True
        return None

    def _array(self, value: Any, schema: dict[str, Any], path: str) -> Mismatch | None:
        if not isinstance(value, list):
            return self._expect(value, "an array", path)
        for n, item in enumerate(value):
            problem = self.check(item, schema["items"], f"{path}[{n}]")
            if problem is not None:
                return problem
        return None

    def _map(self, value: Any, schema: dict[str, Any], path: str) -> Mismatch | None:
        if not isinstance(value, dict):
            return self._expect(value, "an object (map)", path)
        for key, item in value.items():
            problem = self.check(item, schema["values"], f'{path}["{key}"]')
            if problem is not None:
                return problem
        return None

    def _enum(self, value: Any, schema: dict[str, Any], path: str) -> Mismatch | None:
        if isinstance(value, str) and value in schema["symbols"]:
            return None
        symbols = ", ".join(schema["symbols"])
        return Mismatch(
            path, f"{_show(value)} is not a symbol of enum {_short(schema['name'])} ({symbols})"
        )

    def _fixed(self, value: Any, schema: dict[str, Any], path: str) -> Mismatch | None:
        if not isinstance(value, str):
            return self._expect(value, f"a string of {schema['size']} characters (fixed)", path)
        if len(value) != schema["size"]:
            return Mismatch(
                path,
                f"fixed {_short(schema['name'])} needs {schema['size']} characters, got {len(value)}",
            )
        return None

    # -- primitives --------------------------------------------------------------------------
    def _null(self, value: Any, _: Any, path: str) -> Mismatch | None:
        return None if value is None else self._expect(value, "null", path)

    def _boolean(self, value: Any, _: Any, path: str) -> Mismatch | None:
        return None if isinstance(value, bool) else self._expect(value, "a boolean", path)

    def _integer(
        self, value: Any, bounds: tuple[int, int], name: str, path: str
    ) -> Mismatch | None:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)  # 3.0 is how some JSON encoders write 3
            else:
                return self._expect(value, f"an integer ({name})", path)
        if not bounds[0] <= value <= bounds[1]:
            return Mismatch(path, f"{value} is out of range for {name} [{bounds[0]}, {bounds[1]}]")
        return None

    def _int(self, value: Any, _: Any, path: str) -> Mismatch | None:
        return self._integer(value, INT_RANGE, "int", path)

    def _long(self, value: Any, _: Any, path: str) -> Mismatch | None:
        return self._integer(value, LONG_RANGE, "long", path)

    def _float(self, value: Any, _: Any, path: str) -> Mismatch | None:
        problem = self._double(value, _, path)
        if problem is None and math.isfinite(value) and abs(value) > FLOAT_MAX:
            return Mismatch(path, f"{_show(value)} is out of range for float")
        return problem

    def _double(self, value: Any, _: Any, path: str) -> Mismatch | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return self._expect(value, "a number", path)
        return None

    def _string(self, value: Any, _: Any, path: str) -> Mismatch | None:
        return None if isinstance(value, str) else self._expect(value, "a string", path)

    def _bytes(self, value: Any, _: Any, path: str) -> Mismatch | None:
        return None if isinstance(value, str) else self._expect(value, "a string (bytes)", path)


def _branch_name(branch: Any) -> str:
    if isinstance(branch, dict):
        return str(branch.get("name", branch["type"]))
    return str(branch)


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


class PayloadValidator:
    """Checks events' payloads against the registry, under a per-source schema policy.

    ``required_sources``: sources whose events must have a registered schema (policy
    ``require``); every other source's unregistered event types are accepted unchecked.
    """

    def __init__(self, registry: SchemaRegistry, required_sources: Iterable[str] = ()) -> None:
        self._required = frozenset(required_sources)
        self._versions: dict[tuple[str, str], list[tuple[SchemaEntry, dict[str, Any]]]] = {}
        for entry in registry:
            pair = (entry.source, entry.event_type)
            self._versions.setdefault(pair, []).append((entry, parsed_names(entry.parsed)))
        for versions in self._versions.values():
            versions.sort(key=lambda v: v[0].version, reverse=True)  # newest first

    @property
    def required_sources(self) -> frozenset[str]:
        return self._required

    def check(self, event: Event) -> str | Rejection | None:
        """The fingerprint of the newest registered version the payload fits; ``None`` when no
        schema is registered and the source allows that; else a ``Rejection``."""
        versions = self._versions.get((event.source, event.event_type))
        if not versions:
            if event.source not in self._required:
                return None
            return self._reject(
                event,
                Reason.UNKNOWN_SCHEMA,
                f"no schema registered for {event.source}/{event.event_type} "
                f"(source {event.source!r} requires one)",
            )
        first: Mismatch | None = None
        for entry, names in versions:
            problem = validate_payload(event.payload, entry.parsed, names)
            if problem is None:
                return entry.fingerprint
            first = first or problem
        assert first is not None
        latest = versions[0][0]
        return self._reject(event, Reason.SCHEMA_MISMATCH, f"{first} (schema {latest.subject})")

    @staticmethod
    def _reject(event: Event, reason: Reason, detail: str) -> Rejection:
        return Rejection(
            reason,
            detail,
            source=event.source,
            event_type=event.event_type,
            entity_id=event.entity_id,
        )
