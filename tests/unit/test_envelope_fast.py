"""schemas/envelope.py: the fast paths (orjson decoding, events built without the validator)
give exactly what the reference paths give: the same values, events and rejections."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import envelope
from schemas.envelope import (
    MAX_ENTITY_ID_LENGTH,
    MAX_JSON_DEPTH,
    Event,
    Reason,
    Rejection,
    decode_json,
    parse_event,
    plain_event,
)

# -- the references: schemas/envelope.py as it was before the fast paths -----------------------


def reference_decode_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(
            Reason.INVALID_UTF8, f"body is not UTF-8: {exc.reason} at byte {exc.start}"
        )
    try:
        value = envelope._DECODER.decode(text)
    except RecursionError:
        return Rejection(Reason.TOO_DEEP, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    except envelope.DuplicateKey as exc:
        return Rejection(Reason.DUPLICATE_KEY, f"body is ambiguous JSON: {exc}")
    except ValueError as exc:
        return Rejection(Reason.INVALID_JSON, f"body is not valid JSON: {str(exc)[:200]}")
    if envelope._depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        return Rejection(Reason.TOO_DEEP, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if "\\u" in text and envelope._has_lone_surrogate(value):
        return Rejection(Reason.INVALID_JSON, "a \\u escape encodes a lone UTF-16 surrogate")
    return value


def reference_parse_event(obj: Any) -> Event | Rejection:
    if not isinstance(obj, dict):
        kind = type(obj).__name__ if obj is not None else "null"
        return Rejection(Reason.NOT_AN_OBJECT, f"expected a JSON object, got {kind}")
    try:
        return Event.model_validate(obj)
    except ValidationError as exc:
        return envelope._rejection_from(exc, obj)
    except (ValueError, TypeError, OverflowError) as exc:
        return Rejection(Reason.INVALID_FIELD, str(exc)[:200])


def same_value(a: Any, b: Any) -> bool:
    """Equal, of the very same types all the way down (1 == 1.0 == True are not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and repr(a) == repr(b))
    return bool(a == b)


def same_outcome(fast: Event | Rejection, reference: Event | Rejection) -> None:
    assert type(fast) is type(reference), (fast, reference)
    if isinstance(fast, Rejection):
        assert fast == reference
        return
    assert isinstance(reference, Event)
    assert fast == reference
    assert fast.__pydantic_fields_set__ == reference.__pydantic_fields_set__
    assert fast.__pydantic_extra__ == reference.__pydantic_extra__
    assert fast.__pydantic_private__ == reference.__pydantic_private__
    assert list(fast.__dict__) == list(reference.__dict__)
    for name, value in fast.__dict__.items():
        assert same_value(value, reference.__dict__[name]), name
    assert fast.event_time.tzinfo is UTC
    assert fast.model_dump() == reference.model_dump()
    assert fast.model_dump_json() == reference.model_dump_json()


# -- decode_json -------------------------------------------------------------------------------

FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(10**6), 10**6).map(lambda n: n / 100),
)
INTEGERS = st.one_of(
    st.integers(-(2**64), 2**64), st.integers(-(10**30), 10**30), st.just(10**18 + 7)
)
SCALARS = st.one_of(st.none(), st.booleans(), INTEGERS, FLOATS, st.text(max_size=12))
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def json_texts(draw: st.DrawFn) -> bytes:
    value = draw(JSON_VALUES)
    text = json.dumps(
        value, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 1]))
    )
    if draw(st.booleans()):
        text = (
            draw(st.sampled_from(["", " ", "\n", "\t\r\n "]))
            + text
            + draw(st.sampled_from(["", " ", "\n", " x", ",", "}"]))
        )
    if draw(st.integers(0, 4)) == 2 and '{"' in text:  # name a key twice in one object
        at = text.index('{"') + 1
        try:
            key, _ = json.JSONDecoder().raw_decode(text, at)
        except json.JSONDecodeError:  # that '{"' ended a string value ("x{"), not an object
            key = None
        if isinstance(key, str):
            text = text[:at] + json.dumps(key) + ":0," + text[at:]
    raw = text.encode("utf-8")
    if draw(st.integers(0, 9)) == 5:  # cut or spoil it
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.sampled_from([b"", b"\xff", b"\\ud800", b"NaN", b"1e999"]))
    return raw


SPECIAL_TEXTS = [
    b"",
    b" ",
    b"{}",
    b"[]",
    b"null",
    b"NaN",
    b"[Infinity]",
    b'{"a": -Infinity}',
    b"1e400",
    b'{"x": 1e400}',
    b"123456789012345678901234567890",
    b'{"big": 18446744073709551616, "small": -9223372036854775809}',
    b'{"u64": 18446744073709551615, "i64": -9223372036854775808}',
    b'{"d": "1234567890123456789 in a string"}',
    b'"\\ud800"',
    b'{"k": "\\udc00\\ud800"}',
    b'"\\ud83d\\ude00"',
    b'{"\\ud800": 1}',
    b"\xef\xbb\xbf{}",
    b'"\xed\xa0\x80"',
    b'"\xc0\xaf"',
    b'{"a":1,"a":2}',
    b'{"b":1,"a":2,"b":3}',
    b'{"source":"a","source":"b"}',
    b'{"p":{"k":1,"k":1}}',
    b'[{"a":1},{"a":1,"b":[{"c":0,"c":0}]}]',
    b'{"a":1,"\\u0061":2}',
    b'{"a\\"":1,"a\\"":2}',
    b'{"a":"\\"","b":"\\\\"}',
    b'{"x":{"a":1},"y":{"a":1}}',
    b'"\x01"',
    b'"\x7f"',
    b"[1,]",
    b"01",
    b"-0",
    b"-0.0",
    b"1E2",
    b"1e-400",
    b"[" * 64 + b"]" * 64,
    b"[" * 65 + b"]" * 65,
    b"[" * 63 + b"1" + b"]" * 63,
    b'{"a":' * 70 + b"1" + b"}" * 70,
    b"[" * 5000 + b"]" * 5000,
    b'["[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]',
    b"1" * 5000,
]


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(json_texts())
def test_decode_json_is_the_reference(raw: bytes) -> None:
    fast, reference = decode_json(raw), reference_decode_json(raw)
    assert same_value(fast, reference), (raw, fast, reference)


def test_decode_json_special_texts_are_the_reference() -> None:
    for raw in SPECIAL_TEXTS:
        fast, reference = decode_json(raw), reference_decode_json(raw)
        assert same_value(fast, reference), (raw[:60], fast, reference)


# -- parse_event and plain_event ---------------------------------------------------------------

ASCII = st.text(st.characters(codec="ascii"), max_size=8)
TEXT_FIELDS = st.one_of(
    ASCII,
    st.text(max_size=8),
    st.sampled_from(["", "é", "\ud800", " ", "x" * 128, "x" * 129, "x" * 256, "x" * 257]),
    st.integers(-3, 3),
    st.none(),
    st.booleans(),
    st.builds(lambda s: type("Text", (str,), {})(s), ASCII),
)
OFFSETS = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30)), None]
)
TIME_FIELDS = st.one_of(
    st.datetimes(timezones=OFFSETS),
    st.sampled_from(
        [
            "2025-12-28T23:59:59Z",
            "2025-12-28T23:59:59z",
            "2025-12-28T23:59:59.123456+02:00",
            "2025-12-28T23:59:59",
            "2025-12-28",
            "2025-12-28Z",
            "29/12/2025 10:00",
            "2025-12-28T23:59:59ZZ",
            "",
            "1766966399",
        ]
    ),
    st.integers(0, 2**40),
    st.floats(),
    st.none(),
)
PAYLOADS = st.one_of(
    st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=4),
    st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2),
    st.lists(st.integers(), max_size=2),
    st.text(max_size=3),
    st.none(),
)
NAMES = ["source", "event_type", "entity_id", "event_time", "payload", "idempotency_key"]


# Mostly valid fields, so that most objects take the fast path and the odd one does not.
VALID_TEXT = st.text(st.characters(codec="ascii"), min_size=1, max_size=10)
VALID_TIME = st.one_of(
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))])),
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ).map(lambda t: t.isoformat().replace("+00:00", "Z")),
)
VALID_PAYLOAD = st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=4)


def mostly(valid: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.integers(0, 9).flatmap(lambda n: odd if n == 5 else valid)


@st.composite
def event_objects(draw: st.DrawFn) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for name in NAMES:
        if draw(st.integers(0, 29)) == 5 and name != "idempotency_key":
            continue  # missing
        if name == "idempotency_key" and draw(st.booleans()):
            continue  # optional
        if name == "event_time":
            obj[name] = draw(mostly(VALID_TIME, TIME_FIELDS))
        elif name == "payload":
            obj[name] = draw(mostly(VALID_PAYLOAD, PAYLOADS))
        else:
            obj[name] = draw(mostly(VALID_TEXT, TEXT_FIELDS))
    if draw(st.integers(0, 29)) == 5:
        obj["unexpected"] = 1
    return obj


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(event_objects())
def test_parse_event_is_the_reference(obj: dict[str, Any]) -> None:
    same_outcome(parse_event(obj), reference_parse_event(obj))


def test_times_that_overflow_in_utc_are_decided_by_the_model() -> None:
    for when in (
        "0001-01-01T00:00:00+02:00",
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=2))),
    ):
        obj: dict[str, Any] = {
            "source": "s",
            "event_type": "t",
            "entity_id": "e",
            "event_time": when,
            "payload": {},
        }
        assert envelope._plainly_valid_event(obj) is None
        same_outcome(parse_event(obj), reference_parse_event(obj))


def test_the_guide_event_takes_the_fast_path_and_equals_the_model() -> None:
    obj = {
        "source": "demo",
        "event_type": "heartbeat",
        "entity_id": "user_123",
        "event_time": "2025-12-28T23:59:59Z",
        "payload": {"steps": 10},
        "idempotency_key": "optional-stable-producer-key",
    }
    built = envelope._plainly_valid_event(obj)
    assert built is not None
    same_outcome(built, reference_parse_event(obj))
    assert built.payload is not obj["payload"]  # copied, as the model copies it
    assert hash(built.model_dump_json())


@st.composite
def mapped_fields(draw: st.DrawFn) -> tuple[dict[str, str], datetime, dict[str, Any]]:
    texts: dict[str, str] = {}
    odd_text = st.one_of(
        st.text(max_size=6), st.sampled_from(["", "x" * MAX_ENTITY_ID_LENGTH, "y" * 300])
    )
    for name in ("source", "event_type", "entity_id", "idempotency_key"):
        if draw(st.integers(0, 29)) != 5:
            texts[name] = draw(mostly(VALID_TEXT, odd_text))
    utc = st.datetimes(timezones=st.just(UTC))
    when = draw(mostly(utc, st.datetimes(timezones=OFFSETS)))
    payload = draw(VALID_PAYLOAD)
    return texts, when, payload


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(mapped_fields())
def test_plain_event_is_parse_event_of_the_same_fields(
    fields: tuple[dict[str, str], datetime, dict[str, Any]],
) -> None:
    texts, when, payload = fields
    reference = reference_parse_event({**texts, "event_time": when, "payload": payload})
    built = plain_event(texts, when, payload)
    if built is None:  # left to the model: fine, the decoder then asks parse_event
        return
    same_outcome(built, reference)


def test_every_byte_around_and_inside_a_document_decodes_as_the_reference() -> None:
    for byte in (bytes([b]) for b in range(256)):
        for raw in (
            byte + b"{}",
            b"{}" + byte,
            b'{"a":' + byte + b"1}",
            b'["' + byte + b'"]',
            b"[1" + byte + b"]",
            b'"\\' + byte + b'"',
            b"1" + byte + b"5",
        ):
            assert same_value(decode_json(raw), reference_decode_json(raw)), raw
