"""Event identity: a SHA-256 over canonical JSON, stable across processes and Python versions.

Identity (contract, ARCHITECTURE.md): with an idempotency key, of ``source, event_type,
entity_id, idempotency_key``; without one, of ``source, event_type, entity_id, event_time``
(UTC, microseconds) and the canonical payload. A rejected record has no envelope to speak of,
so its id is the digest of its raw bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from itertools import compress
from math import isfinite
from typing import Any

import orjson

from schemas.envelope import Event, format_time

_IDENTITY_VERSION = "pik.v1"
_MAX_SAFE_INTEGER = 2**53
_CONTAINERS = frozenset({dict, list, tuple})
_IS_FLOAT = {float}.__contains__
_ORJSON_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
# Where orjson may print a float otherwise than ``_normalise`` and ``repr`` do: an integral
# float (``10.0``, ``-0.0``: the definition prints an integer) or a magnitude in [1e-5, 1e-4)
# (orjson ``0.00001``, repr ``1e-05``), both ``_POINT_ZERO``; a one-digit negative exponent
# (orjson ``1e-7``, repr ``1e-07``), ``_SHORT_EXPONENT``; NaN and infinities (orjson ``null``;
# the definition refuses them), looked for in the value when its text holds a ``null``. Every other float orjson prints as ``repr`` does
# (tests/unit/test_canonical_json.py, and millions of random and boundary floats when this was
# written). Each is looked for only where its literal part is found (fast ``str`` searches).
_POINT_ZERO = re.compile(r"\.0(?:[,}\]]|$|000)")
_SHORT_EXPONENT = re.compile(r"e-\d(?:[,}\]]|$)")


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
    orjson prints most values so, several times faster, and is used when ``_orjson_text``
    says it does.
    """
    text = _orjson_text(value)
    return text if text is not None else _standard_canonical_json(value)


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


def _orjson_text(value: Any) -> str | None:
    """``canonical_json(value)`` as orjson prints it, or None when orjson might print it
    otherwise (then the standard encoder decides).

    orjson prints text, key order (by code point), ``true``, ``false``, ``null`` and integers as
    the standard encoder does (``tests/unit/test_canonical_json.py`` checks every code point),
    and refuses what the standard encoder would print otherwise: keys that are not text,
    integers past 64 bits, lone surrogates, and (through ``_ORJSON_OPTIONS`` and
    ``_refuse``) subclasses of JSON's types, dates and times, dataclasses. Floats it prints as
    ``repr`` does except where ``_POINT_ZERO`` and ``_SHORT_EXPONENT`` look; a string that happens to match
    costs only the slow path. (The checks run on the decoded text: CPython searches ``str``
    several times faster than ``bytes``.) Three values the standard encoder refuses orjson
    prints: a ``uuid.UUID`` (its text), a plain ``Enum`` member (its value) and an
    ``orjson.Fragment``; they are not JSON values, so no event decoded from JSON or Avro holds
    one.
    """
    try:
        text = orjson.dumps(value, default=_refuse, option=_ORJSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return None
    if (
        (".0" in text and _POINT_ZERO.search(text) is not None)
        or ("e-" in text and _SHORT_EXPONENT.search(text) is not None)
        or ("null" in text and _holds_non_finite_float(value))
    ):
        return None
    return text


def _holds_non_finite_float(value: Any) -> bool:
    """Whether ``value`` holds a NaN or an infinity, which orjson prints as ``null``. Only
    asked of a value orjson printed (so no cycle, and JSON's types only) whose text holds a
    ``null``; the items of each container are sorted by the C iterators, not a Python loop."""
    stack = [value]
    while stack:
        container = stack.pop()
        kind = type(container)
        if kind is float:
            if not isfinite(container):
                return True
            continue
        if kind is not dict and kind is not list and kind is not tuple:
            continue
        items = container.values() if kind is dict else container
        kinds = set(map(type, items))
        if float in kinds and not all(
            map(isfinite, compress(items, map(_IS_FLOAT, map(type, items))))
        ):
            return True
        if kinds & _CONTAINERS:
            stack.extend(compress(items, map(_CONTAINERS.__contains__, map(type, items))))
    return False


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is left to the standard encoder")


def _digest(parts: list[Any]) -> str:
    """SHA-256 of ``canonical_json(parts)`` in UTF-8."""
    return hashlib.sha256(canonical_json(parts).encode("utf-8")).hexdigest()


def event_id(event: Event, canonical_payload: str | None = None) -> str:
    """The event's identity. ``canonical_payload``, when the caller has it, must be
    ``canonical_json(event.payload)``: an identity without an idempotency key then reuses it
    instead of printing the payload again (a list prints as its items' texts joined by ``,``)."""
    source, event_type, entity_id, key = (
        event.source,
        event.event_type,
        event.entity_id,
        event.idempotency_key,
    )
    if key is not None:
        parts = [_IDENTITY_VERSION, source, event_type, entity_id, "key", key]
        if not type(source) is type(event_type) is type(entity_id) is type(key) is str:
            return _digest(parts)  # not the model's own values (a model_construct, say)
        try:  # only text, which orjson prints as the standard encoder does, or refuses
            return hashlib.sha256(orjson.dumps(parts)).hexdigest()
        except orjson.JSONEncodeError:  # a lone surrogate, say
            return _digest(parts)
    head = [_IDENTITY_VERSION, source, event_type, entity_id, "content"]
    when = format_time(event.event_time)
    if canonical_payload is None:
        return _digest([*head, when, event.payload])
    text = canonical_json([*head, when])[:-1] + "," + canonical_payload + "]"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def rejected_event_id(raw: bytes) -> str:
    return hashlib.sha256(b"pik.v1.rejected\0" + raw).hexdigest()
