"""Event identity: a SHA-256 over canonical JSON, stable across processes and Python versions.

Identity (contract, ARCHITECTURE.md): with an idempotency key, of ``source, event_type,
entity_id, idempotency_key``; without one, of ``source, event_type, entity_id, event_time``
(UTC, microseconds) and the canonical payload. A rejected record has no envelope to speak of,
so its id is the digest of its raw bytes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson

from schemas.envelope import Event, format_time

_IDENTITY_VERSION = "pik.v1"
_MAX_SAFE_INTEGER = 2**53
_ORJSON_WALK_LIMIT = 100_000
_FLAT_TYPES = frozenset({str, int, bool, type(None)})
_JSON_TYPES = _FLAT_TYPES | {dict, list, float}


def _normalise(value: Any) -> Any:
    """Integral floats print as integers (as RFC 8785 does), so 10.0 and 10 are one value."""
    if isinstance(value, float) and value.is_integer() and abs(value) < _MAX_SAFE_INTEGER:
        return int(value)
    if isinstance(value, dict):
        return {key: _normalise(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalise(item) for item in value]
    return value


# The encoder ``json.dumps`` would build for these options, built once.
_ENCODER = json.JSONEncoder(
    sort_keys=True,
    separators=(",", ":"),
    ensure_ascii=False,
    allow_nan=False,
)


def _may_hold_integral_float(text: str) -> bool:
    """Whether encoded ``text`` may print a float that ``_normalise`` would make an int.

    Such a float is integral with magnitude below 2**53 < 1e16, so ``float.__repr__`` prints it
    in fixed notation ending in ``.0`` (``10.0``, ``-0.0``), and in JSON a number is followed by
    ``,``, ``]``, ``}`` or the end of the text. Text inside strings may match too: that only
    costs the slow path, never a wrong answer.
    """
    return ".0," in text or ".0}" in text or ".0]" in text or text.endswith(".0")


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text, no NaN: the same value always prints the same.

    That is ``json.dumps(_normalise(value), sort_keys=True, separators=(",", ":"),
    ensure_ascii=False, allow_nan=False)``, and only that: ``_standard_canonical_json``.
    orjson prints most values so, several times faster, and is used when
    ``_orjson_prints_it_so`` says it will.
    """
    if _orjson_prints_it_so(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        except orjson.JSONEncodeError:  # a key not text, a lone surrogate, a big integer...
            pass
    return _standard_canonical_json(value)


def _standard_canonical_json(value: Any) -> str:
    """The definition, skipping the walk of ``_normalise`` when the plain encoding shows it
    would change nothing (and failing as the definition does: a cycle, NaN...)."""
    try:
        text = _ENCODER.encode(value)
    except Exception:  # fail as the definition fails (for a cycle: in ``_normalise``)
        return _ENCODER.encode(_normalise(value))
    if _may_hold_integral_float(text):
        return _ENCODER.encode(_normalise(value))
    return text


def _orjson_prints_it_so(value: Any) -> bool:
    """Whether orjson prints ``value`` exactly as ``canonical_json`` defines it.

    orjson prints text, key order (by code point), ``true``, ``false``, ``null`` and integers as
    the standard encoder does (``tests/unit/test_canonical_json.py`` checks every code point),
    and refuses what the standard encoder would print otherwise (keys that are not text,
    integers past 64 bits, lone surrogates), which sends the value down the standard path. So a
    value qualifies when it holds only JSON's own types (exactly: no subclasses, which orjson
    may print its own way) and every ``float`` in it is neither integral (``_normalise`` prints
    those as integers) nor printed by orjson other than as its ``repr`` (NaN and infinities
    among them). The walk stops, saying no, after ``_ORJSON_WALK_LIMIT`` items (a cycle).
    """
    kind = type(value)
    if kind is not dict and kind is not list:
        return kind in _JSON_TYPES and (kind is not float or _orjson_float(value))
    stack = [value]
    seen = 0
    while stack:
        container = stack.pop()
        items = container.values() if type(container) is dict else container
        seen += len(container)
        kinds = set(map(type, items))
        if kinds <= _FLAT_TYPES:
            continue
        if not kinds <= _JSON_TYPES or seen > _ORJSON_WALK_LIMIT:
            return False
        for item in items:
            kind = type(item)
            if kind is float:
                if not _orjson_float(item):
                    return False
            elif kind is dict or kind is list:
                stack.append(item)
    return True


def _orjson_float(value: float) -> bool:
    return not value.is_integer() and orjson.dumps(value) == repr(value).encode()


def _digest(parts: list[Any]) -> str:
    """SHA-256 of ``canonical_json(parts)`` in UTF-8."""
    if _orjson_prints_it_so(parts):
        try:
            return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()
        except orjson.JSONEncodeError:
            pass
    return hashlib.sha256(_standard_canonical_json(parts).encode("utf-8")).hexdigest()


def event_id(event: Event) -> str:
    head = [_IDENTITY_VERSION, event.source, event.event_type, event.entity_id]
    if event.idempotency_key is not None:
        return _digest([*head, "key", event.idempotency_key])
    return _digest([*head, "content", format_time(event.event_time), event.payload])


def rejected_event_id(raw: bytes) -> str:
    return hashlib.sha256(b"pik.v1.rejected\0" + raw).hexdigest()
