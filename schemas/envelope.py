"""The event envelope: what an event is, and how a raw body becomes one or a rejection.

A rejected event is data with a reason, never an exception: ``parse_body`` and ``parse_event``
return either an ``Event`` or a ``Rejection`` and never raise for any input.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timezone
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
    ValidationError,
)

from schemas.errors import KitError

# The envelope's limits, declared here once. The model below and every fast path (this
# module's plain paths, consumers/tap/fastmap.py, consumers/tap/decode.py) use these names, and
# tests/unit/test_envelope_limits.py checks each path at every limit and one past it.
MAX_SOURCE_LENGTH = 128
MAX_EVENT_TYPE_LENGTH = 128
MAX_ENTITY_ID_LENGTH = 256
MAX_IDEMPOTENCY_KEY_LENGTH = 256
DEFAULT_MAX_EVENT_BYTES = 256 * 1024
MAX_JSON_DEPTH = 64
TEXT_LIMITS: Mapping[str, int] = MappingProxyType(  # characters, per text field
    {
        "source": MAX_SOURCE_LENGTH,
        "event_type": MAX_EVENT_TYPE_LENGTH,
        "entity_id": MAX_ENTITY_ID_LENGTH,
        "idempotency_key": MAX_IDEMPOTENCY_KEY_LENGTH,
    }
)


class Status(StrEnum):
    ACCEPTED = "ACCEPTED"
    DUPLICATE = "DUPLICATE"
    REJECTED = "REJECTED"


class Reason(StrEnum):
    """Machine-readable rejection reasons (stable: dashboards and audits group by them)."""

    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    TOO_LARGE = "too_large"
    TOO_DEEP = "too_deep"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    UNEXPECTED_FIELD = "unexpected_field"
    INVALID_TIME = "invalid_time"
    DUPLICATE_KEY = "duplicate_key"
    PAYLOAD_NOT_OBJECT = "payload_not_object"
    FIELD_TOO_LONG = "field_too_long"
    EMPTY_FIELD = "empty_field"
    SCHEMA_MISMATCH = "schema_mismatch"
    UNKNOWN_SCHEMA = "unknown_schema"
    UNDECODABLE = "undecodable"


def to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def format_time(value: datetime) -> str:
    """Fixed-width UTC text with microseconds and a four-digit year (``0999-06-01T...``), so
    that string order is time order. (``strftime("%Y")`` prints year 999 as ``999``.)"""
    return to_utc(value).isoformat(timespec="microseconds")[:-6] + "Z"


# RFC 3339 ``date-time`` (section 5.6): full date, ``T`` (or, as its note allows, a space),
# time with optional ``.`` fraction, and ``Z`` or ``±hh:mm``. ``fromisoformat`` alone also
# takes week dates, basic format, ``+hhmm``, second-level offsets and ``,`` fractions.
_RFC3339 = re.compile(
    r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(?:\.(\d{1,6})(\d*))?(?:[Zz]|[+-]\d\d:\d\d)",
    re.ASCII,
).fullmatch


def parse_time(text: str) -> datetime:
    """RFC 3339 with an offset (``Z`` or ``+hh:mm``) → aware UTC datetime; ValueError otherwise.

    Times are kept to the microsecond (the identity and the archive's ``timestamp-micros``):
    a fraction with a non-zero digit past the sixth is refused, never truncated, so that two
    different instants never share an identity. A time outside years 1..9999 once in UTC is
    refused too."""
    match = _RFC3339(text)
    if match is None:
        raise ValueError("not RFC 3339 (YYYY-MM-DDThh:mm:ss[.frac] and Z or +hh:mm)")
    extra = match[2]
    if extra and extra.strip("0"):
        raise ValueError("sub-microsecond precision cannot be kept (at most 6 digits)")
    value = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    try:
        return value.astimezone(UTC)  # to_utc, inlined: once per record
    except OverflowError:
        raise ValueError("out of range (years 1..9999) in UTC") from None


def _check_payload(value: dict[str, Any]) -> dict[str, Any]:
    return value


def _require_text(value: Any) -> Any:
    """Times are RFC 3339 text with an offset: a number, even as a string (seconds?
    milliseconds?), is ambiguous and refused."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("event_time must be RFC 3339 text with an offset")
    try:
        return parse_time(value)
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 time with an offset: {value[:40]!r}: {exc}") from None


def _utc(value: datetime) -> datetime:
    try:
        return to_utc(value)
    except OverflowError:  # year 1 at +02:00 is before year 1 in UTC
        raise ValueError("out of range (years 1..9999) in UTC") from None


NonEmpty = StringConstraints(min_length=1, strict=True)


class Event(BaseModel):
    """The envelope (contract): HTTP ingest body and the default mapping of stream records."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Annotated[str, NonEmpty, StringConstraints(max_length=MAX_SOURCE_LENGTH)]
    event_type: Annotated[str, NonEmpty, StringConstraints(max_length=MAX_EVENT_TYPE_LENGTH)]
    entity_id: Annotated[str, NonEmpty, StringConstraints(max_length=MAX_ENTITY_ID_LENGTH)]
    event_time: Annotated[AwareDatetime, BeforeValidator(_require_text), AfterValidator(_utc)]
    payload: Annotated[dict[str, Any], AfterValidator(_check_payload)]
    idempotency_key: (
        Annotated[str, NonEmpty, StringConstraints(max_length=MAX_IDEMPOTENCY_KEY_LENGTH)] | None
    ) = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record is not an event. Known envelope fields are kept for indexing and audits."""

    reason: Reason
    detail: str
    source: str | None = None
    event_type: str | None = None
    entity_id: str | None = None


_REASON_BY_ERROR = {
    "missing": Reason.MISSING_FIELD,
    "extra_forbidden": Reason.UNEXPECTED_FIELD,
    "string_too_short": Reason.EMPTY_FIELD,
    "string_too_long": Reason.FIELD_TOO_LONG,
    "timezone_aware": Reason.INVALID_TIME,
    "datetime_parsing": Reason.INVALID_TIME,
    "datetime_from_date_parsing": Reason.INVALID_TIME,
    "datetime_type": Reason.INVALID_TIME,
}


def _known_str(obj: dict[str, Any], name: str, limit: int) -> str | None:
    value = obj.get(name)
    if isinstance(value, str) and 0 < len(value) <= limit:
        return value
    return None


def _rejection_from(error: ValidationError, obj: dict[str, Any]) -> Rejection:
    first = error.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or "body"
    reason = _REASON_BY_ERROR.get(first["type"], Reason.INVALID_FIELD)
    if field == "payload" and first["type"] == "dict_type":
        reason = Reason.PAYLOAD_NOT_OBJECT
    if field == "event_time" and reason is Reason.INVALID_FIELD:
        reason = Reason.INVALID_TIME
    return Rejection(
        reason=reason,
        detail=f"{field}: {first['msg']}",
        source=_known_str(obj, "source", MAX_SOURCE_LENGTH),
        event_type=_known_str(obj, "event_type", MAX_EVENT_TYPE_LENGTH),
        entity_id=_known_str(obj, "entity_id", MAX_ENTITY_ID_LENGTH),
    )


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a decoded JSON value, stopping early once past ``limit``."""
    depth, level = 0, [value]
    while level and depth <= limit:
        depth += 1
        nxt: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                nxt.extend(item.values())
            elif isinstance(item, list):
                nxt.extend(item)
        level = nxt
    return depth


def _has_lone_surrogate(value: Any) -> bool:
    """JSON may escape half a surrogate pair (``"\\ud800"``): text that no UTF-8 can carry."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _checked_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:32]} is out of range")
    return value


class DuplicateKey(KitError, ValueError):
    """A JSON object names one key twice: which value is meant is not for the kit to guess."""


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise DuplicateKey(f"key {twice[:64]!r} appears twice in one object")
    return obj


_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant,
    parse_float=_checked_float,
    object_pairs_hook=_unique_object,
)
# For the checks around orjson: every digit → "0", every "{" and "[" → "[", the rest → " ".
_DIGITS_AND_OPENINGS = bytes(
    ord("0") if ord("0") <= i <= ord("9") else ord("[") if i in b"{[" else ord(" ")
    for i in range(256)
)
_NINETEEN_DIGITS = b"0" * 19  # an integer orjson might read as a float (past 64 bits)


def decode_json(raw: bytes) -> Any | Rejection:
    """Strict JSON: UTF-8, no NaN/Infinity, bounded depth. Never raises.

    orjson reads a document as the standard decoder does, several times faster, except that it
    reads integers past 64 bits as floats and silently keeps the last of duplicate keys: a text
    holding a run of 19 digits, any text orjson refuses, and any text where duplicates cannot
    be ruled out cheaply, is read by the standard decoder (which refuses duplicate keys, and
    words the rejection). Without a backslash every ``"`` of a text delimits a string; orjson
    prints a value read from it with no escapes, so it prints as many ``"`` as the text holds
    exactly when no key was dropped.
    """
    digits = raw.translate(_DIGITS_AND_OPENINGS)
    if _NINETEEN_DIGITS not in digits:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:  # orjson refuses NaN, infinities and lone surrogates itself
            # A value is at most one level deeper than its count of opening brackets.
            deep = digits.count(b"[") >= MAX_JSON_DEPTH
            if deep and _depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
                return Rejection(
                    Reason.TOO_DEEP, f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
                )
            if type(value) is not dict and type(value) is not list:
                return value  # a scalar has no keys
            if b"\\" not in raw and raw.count(b'"') == orjson.dumps(value).count(b'"'):
                return value
    try:  # orjson validates UTF-8 as strictly as this; it is decoded here for the slow path
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(
            Reason.INVALID_UTF8, f"body is not UTF-8: {exc.reason} at byte {exc.start}"
        )
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        return Rejection(Reason.TOO_DEEP, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    except DuplicateKey as exc:
        return Rejection(Reason.DUPLICATE_KEY, f"body is ambiguous JSON: {exc}")
    except ValueError as exc:  # JSONDecodeError, NaN, huge ints (int_max_str_digits)
        return Rejection(Reason.INVALID_JSON, f"body is not valid JSON: {str(exc)[:200]}")
    if _depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        return Rejection(Reason.TOO_DEEP, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if "\\u" in text and _has_lone_surrogate(value):
        return Rejection(Reason.INVALID_JSON, "a \\u escape encodes a lone UTF-16 surrogate")
    return value


def parse_event(obj: Any) -> Event | Rejection:
    """A decoded JSON value → ``Event`` or ``Rejection``. Never raises."""
    if not isinstance(obj, dict):
        kind = type(obj).__name__ if obj is not None else "null"
        return Rejection(Reason.NOT_AN_OBJECT, f"expected a JSON object, got {kind}")
    event = _plainly_valid_event(obj)
    if event is not None:
        return event
    try:
        return Event.model_validate(obj)
    except ValidationError as exc:
        return _rejection_from(exc, obj)
    except (ValueError, TypeError, OverflowError) as exc:  # pragma: no cover - defensive
        return Rejection(Reason.INVALID_FIELD, str(exc)[:200])


_EVENT_FIELDS = frozenset(Event.model_fields)
_REQUIRED_FIELDS = frozenset(n for n, f in Event.model_fields.items() if f.is_required())
_TEXT_KEYS = frozenset({str})
_new_instance = object.__new__


def plain_event(
    texts: dict[str, str], event_time: datetime, payload: dict[str, Any]
) -> Event | None:
    """``parse_event({**texts, "event_time": event_time, "payload": payload})`` for values that
    already have the model's types, as a tap binding resolves them: ``texts`` among source,
    event type, entity id and idempotency key, an aware UTC time, and a payload with text keys
    (as every decoded JSON object has) that the event may keep. Built without running the
    validator when every rule plainly holds; else None, and ``parse_event`` decides (and words
    any rejection)."""
    source, event_type, entity_id = (
        texts.get("source"),
        texts.get("event_type"),
        texts.get("entity_id"),
    )
    if (
        type(source) is not str
        or type(event_type) is not str
        or type(entity_id) is not str
        or not 0 < len(source) <= MAX_SOURCE_LENGTH
        or not 0 < len(event_type) <= MAX_EVENT_TYPE_LENGTH
        or not 0 < len(entity_id) <= MAX_ENTITY_ID_LENGTH
        or not (source + event_type + entity_id).isascii()  # see _plain_text
        or type(event_time) is not datetime
        or event_time.tzinfo is not UTC
        or type(payload) is not dict
    ):
        return None
    key = texts.get("idempotency_key")
    if key is not None and not _plain_text(key, MAX_IDEMPOTENCY_KEY_LENGTH):
        return None
    fields = {*texts, "event_time", "payload"}
    if not fields <= _EVENT_FIELDS:
        return None
    return _new_event(source, event_type, entity_id, event_time, payload, key, fields)


def _plainly_valid_event(obj: dict[str, Any]) -> Event | None:
    """The ``Event`` that ``Event.model_validate(obj)`` returns, built without running the
    validator, when ``obj`` plainly satisfies every rule of the model; else None (let the model
    decide, and word any rejection). Most records on a busy stream take this path."""
    keys = obj.keys()
    if type(obj) is not dict or not keys <= _EVENT_FIELDS or not keys >= _REQUIRED_FIELDS:
        return None
    when = obj["event_time"]
    try:
        if type(when) is str:
            when = parse_time(when)
        elif type(when) is datetime and isinstance(when.tzinfo, timezone):
            when = to_utc(when)
        else:
            return None
    except (ValueError, OverflowError):  # e.g. year 1 at +02:00 is before year 1 in UTC
        return None
    payload = obj["payload"]
    if type(payload) is not dict:
        return None
    return _checked_event(
        obj["source"],
        obj["event_type"],
        obj["entity_id"],
        when,
        dict(payload),  # as the model copies it
        obj.get("idempotency_key"),
        set(keys),
    )


def _plain_text(value: Any, limit: int) -> bool:
    """A ``str`` the model takes as it is. Non-ASCII text is left to the model, which refuses
    lone surrogates."""
    return type(value) is str and 0 < len(value) <= limit and value.isascii()


def _checked_event(
    source: Any,
    event_type: Any,
    entity_id: Any,
    event_time: datetime,
    payload: dict[str, Any],
    idempotency_key: Any,
    fields_set: set[str],
) -> Event | None:
    """The ``Event`` of these values if they plainly pass the model's rules (``event_time``
    already aware UTC, ``payload`` a dict); else None."""
    if not (
        _plain_text(source, MAX_SOURCE_LENGTH)
        and _plain_text(event_type, MAX_EVENT_TYPE_LENGTH)
        and _plain_text(entity_id, MAX_ENTITY_ID_LENGTH)
        and (idempotency_key is None or _plain_text(idempotency_key, MAX_IDEMPOTENCY_KEY_LENGTH))
        and set(map(type, payload)) <= _TEXT_KEYS
    ):
        return None
    return _new_event(
        source, event_type, entity_id, event_time, payload, idempotency_key, fields_set
    )


def _new_event(
    source: str,
    event_type: str,
    entity_id: str,
    event_time: datetime,
    payload: dict[str, Any],
    idempotency_key: str | None,
    fields_set: set[str],
) -> Event:
    """An ``Event`` of valid values, made as ``Event.model_construct`` makes one (setting the
    same attributes) without its generic field loop: the model's slots are set through their
    own descriptors, as ``object.__setattr__`` would find them."""
    event = _new_instance(Event)  # as Event.__new__(Event), without the metaclass' lookup
    _set_dict(
        event,
        {
            "source": source,
            "event_type": event_type,
            "entity_id": entity_id,
            "event_time": event_time,
            "payload": payload,
            "idempotency_key": idempotency_key,
        },
    )
    _set_fields_set(event, fields_set)
    _set_extra(event, None)
    _set_private(event, None)
    return event


# For callers that have checked every rule of the model themselves (consumers/tap/fastmap.py).
valid_event = _new_event
_SLOTS = vars(BaseModel)
_set_dict = _SLOTS["__dict__"].__set__
_set_fields_set = _SLOTS["__pydantic_fields_set__"].__set__
_set_extra = _SLOTS["__pydantic_extra__"].__set__
_set_private = _SLOTS["__pydantic_private__"].__set__


def parse_body(raw: bytes, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Event | Rejection:
    """Raw bytes of one event (HTTP body, NDJSON line, JSON stream record) → event or rejection."""
    if len(raw) > max_bytes:
        return Rejection(Reason.TOO_LARGE, f"event is {len(raw)} bytes, limit {max_bytes}")
    decoded = decode_json(raw)
    if isinstance(decoded, Rejection):
        return decoded
    return parse_event(decoded)
