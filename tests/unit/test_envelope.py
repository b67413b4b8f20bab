"""schemas/envelope.py: a raw body becomes an Event or a Rejection with a reason, never an error."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from schemas.envelope import (
    DEFAULT_MAX_EVENT_BYTES,
    MAX_ENTITY_ID_LENGTH,
    MAX_SOURCE_LENGTH,
    Event,
    Reason,
    Rejection,
    Status,
    decode_json,
    format_time,
    parse_body,
    parse_event,
    parse_time,
)
from tests.unit.support import GUIDE_EVENT, event_body

ENVELOPE_FIELDS = ["source", "event_type", "entity_id", "event_time", "payload"]


def rejected(raw: bytes, **kwargs: int) -> Rejection:
    result = parse_body(raw, **kwargs)
    assert isinstance(result, Rejection), f"expected a rejection, got {result!r}"
    return result


# -- the valid event ----------------------------------------------------------------------------


def test_guide_event_is_valid() -> None:
    event = parse_body(json.dumps(GUIDE_EVENT).encode())
    assert isinstance(event, Event)
    assert event.source == "demo"
    assert event.event_type == "heartbeat"
    assert event.entity_id == "user_123"
    assert event.event_time == datetime(2025, 12, 28, 23, 59, 59, tzinfo=UTC)
    assert event.payload == {"steps": 10}
    assert event.idempotency_key == "optional-stable-producer-key"


def test_idempotency_key_is_optional() -> None:
    event = parse_body(event_body())
    assert isinstance(event, Event)
    assert event.idempotency_key is None


def test_status_values_are_the_contract_words() -> None:
    assert [s.value for s in Status] == ["ACCEPTED", "DUPLICATE", "REJECTED"]


# -- missing, wrong and unexpected fields -------------------------------------------------------


@pytest.mark.parametrize("field", ENVELOPE_FIELDS)
def test_each_missing_field_is_named(field: str) -> None:
    body = {k: v for k, v in GUIDE_EVENT.items() if k != field}
    rejection = rejected(json.dumps(body).encode())
    assert rejection.reason is Reason.MISSING_FIELD
    assert field in rejection.detail


def test_rejection_keeps_known_envelope_fields_for_audits() -> None:
    rejection = rejected(event_body(payload=[1]))
    assert (rejection.source, rejection.event_type, rejection.entity_id) == (
        "demo",
        "heartbeat",
        "user_123",
    )


def test_integer_entity_id_is_rejected() -> None:
    rejection = rejected(event_body(entity_id=123))
    assert rejection.reason is Reason.INVALID_FIELD
    assert "entity_id" in rejection.detail
    assert rejection.entity_id is None


@pytest.mark.parametrize("field", ["source", "event_type", "entity_id", "idempotency_key"])
def test_empty_strings_are_rejected(field: str) -> None:
    rejection = rejected(event_body(**{field: ""}))
    assert rejection.reason is Reason.EMPTY_FIELD
    assert field in rejection.detail


@pytest.mark.parametrize(
    ("field", "limit"), [("source", MAX_SOURCE_LENGTH), ("entity_id", MAX_ENTITY_ID_LENGTH)]
)
def test_over_long_fields_are_rejected(field: str, limit: int) -> None:
    assert isinstance(parse_body(event_body(**{field: "x" * limit})), Event)
    rejection = rejected(event_body(**{field: "x" * (limit + 1)}))
    assert rejection.reason is Reason.FIELD_TOO_LONG
    assert field in rejection.detail


@pytest.mark.parametrize("payload", [[1, 2], "steps", 10, None, True])
def test_payload_must_be_an_object(payload: object) -> None:
    assert rejected(event_body(payload=payload)).reason is Reason.PAYLOAD_NOT_OBJECT


def test_unexpected_field_is_rejected_and_named() -> None:
    rejection = rejected(event_body(colour="blue"))
    assert rejection.reason is Reason.UNEXPECTED_FIELD
    assert "colour" in rejection.detail


# -- time -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["2025-12-28T23:59:59", "2025-12-28", "yesterday", ""])
def test_event_time_without_offset_or_unparseable_is_invalid_time(text: str) -> None:
    rejection = rejected(event_body(event_time=text))
    assert rejection.reason is Reason.INVALID_TIME
    assert "event_time" in rejection.detail


def test_offsets_are_normalised_to_utc() -> None:
    east = parse_body(event_body(event_time="2025-12-29T01:59:59+02:00"))
    utc = parse_body(event_body(event_time="2025-12-28T23:59:59Z"))
    assert isinstance(east, Event)
    assert isinstance(utc, Event)
    assert east.event_time == utc.event_time
    assert east.event_time.utcoffset() == timedelta(0)
    assert format_time(east.event_time) == "2025-12-28T23:59:59.000000Z"


def test_parse_time_accepts_z_and_offsets_and_returns_utc() -> None:
    expected = datetime(2025, 12, 28, 23, 59, 59, tzinfo=UTC)
    assert parse_time("2025-12-28T23:59:59Z") == expected
    assert parse_time("2025-12-28T23:59:59z") == expected
    assert parse_time("2025-12-28T18:59:59-05:00") == expected
    assert parse_time("2025-12-28T18:59:59-05:00").utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["2025-12-28T23:59:59", "not a time"])
def test_parse_time_refuses_text_without_offset(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_format_time_is_fixed_width_utc_so_string_order_is_time_order() -> None:
    base = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5)))
    times = [base + timedelta(microseconds=n) for n in (0, 1, 999_999, 10**7)]
    texts = [format_time(t) for t in times]
    assert texts[0] == "2025-01-01T22:04:05.000000Z"
    assert {len(t) for t in texts} == {27}
    assert sorted(texts) == texts


# -- JSON decoding ------------------------------------------------------------------------------


def test_invalid_utf8_is_rejected() -> None:
    assert rejected(b'{"source": "\xff\xfe"}').reason is Reason.INVALID_UTF8


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_infinity_and_overflowing_numbers_are_invalid_json(constant: str) -> None:
    raw = event_body().replace(b'{"steps": 10}', b'{"steps": ' + constant.encode() + b"}")
    assert rejected(raw).reason is Reason.INVALID_JSON


def test_ten_thousand_digit_integer_is_invalid_json_not_an_error() -> None:
    raw = event_body().replace(b'{"steps": 10}', b'{"steps": ' + b"7" * 10_000 + b"}")
    rejection = rejected(raw)
    assert rejection.reason is Reason.INVALID_JSON


@pytest.mark.parametrize(
    "raw", [b"", b"{", b'{"a": 1,}', b"{'a': 1}", b'{"a": 1} {"b": 2}', b"\xef\xbb\xbf{}"]
)
def test_malformed_json_is_invalid_json(raw: bytes) -> None:
    assert rejected(raw).reason is Reason.INVALID_JSON


def test_nesting_depth_100_is_too_deep() -> None:
    deep = "[" * 100 + "]" * 100
    raw = event_body().replace(b'{"steps": 10}', b'{"steps": ' + deep.encode() + b"}")
    assert rejected(raw).reason is Reason.TOO_DEEP


def test_moderate_nesting_is_accepted() -> None:
    nested = "[" * 10 + "1" + "]" * 10
    raw = event_body().replace(b'{"steps": 10}', b'{"steps": ' + nested.encode() + b"}")
    assert isinstance(parse_body(raw), Event)


@pytest.mark.parametrize("raw", [b"[" * 10_000, b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000])
def test_pathological_nesting_is_a_rejection_not_an_error(raw: bytes) -> None:
    assert rejected(raw).reason in {Reason.TOO_DEEP, Reason.INVALID_JSON}


def test_decode_json_returns_values_for_valid_json() -> None:
    assert decode_json(b'{"a": [1, 2.5, "x", null]}') == {"a": [1, 2.5, "x", None]}


# -- size and shape -----------------------------------------------------------------------------


def test_body_over_the_limit_is_too_large() -> None:
    raw = event_body()
    assert isinstance(parse_body(raw, max_bytes=len(raw)), Event)
    rejection = rejected(raw, max_bytes=len(raw) - 1)
    assert rejection.reason is Reason.TOO_LARGE
    assert str(len(raw)) in rejection.detail


def test_default_limit_applies() -> None:
    filler = "x" * DEFAULT_MAX_EVENT_BYTES
    assert rejected(event_body(payload={"f": filler})).reason is Reason.TOO_LARGE


@pytest.mark.parametrize("raw", [b'"a string"', b"[1, 2]", b"null", b"42", b"true"])
def test_non_object_bodies_are_not_an_object(raw: bytes) -> None:
    assert rejected(raw).reason is Reason.NOT_AN_OBJECT


def test_parse_event_never_raises_on_python_values() -> None:
    values: list[object] = [None, 1, "x", [], {"source": object()}, {1: 2}]
    for value in values:
        assert isinstance(parse_event(value), Rejection)


# -- never raises -------------------------------------------------------------------------------


def test_random_bytes_never_raise() -> None:
    rng = random.Random(1)
    for _ in range(2_000):
        raw = rng.randbytes(rng.randint(0, 64))
        assert isinstance(parse_body(raw), Event | Rejection)


def test_mutated_guide_events_never_raise() -> None:
    rng = random.Random(1)
    base = bytearray(json.dumps(GUIDE_EVENT).encode())
    alphabet = b'{}[]",:0123456789.eE+-\\u \xff'
    for _ in range(2_000):
        raw = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.choice(alphabet)
        assert isinstance(parse_body(bytes(raw)), Event | Rejection)


# -- known bugs -----------------------------------------------------------------------------------


def test_lone_surrogate_escape_in_payload_is_rejected() -> None:
    raw = event_body().replace(b'{"steps": 10}', b'{"note": "\\ud800"}')
    assert isinstance(parse_body(raw), Rejection)


def test_known_fields_kept_on_a_rejection_are_utf8_encodable() -> None:
    rejection = rejected(b'{"source": "\\ud800", "event_type": "heartbeat"}')
    for value in (rejection.source, rejection.event_type, rejection.entity_id):
        if value is not None:
            value.encode("utf-8")


@pytest.mark.parametrize("when", [1766966399, 1766966399.5, True])
def test_numeric_event_time_is_rejected_as_ambiguous(when: object) -> None:
    body = json.dumps({**GUIDE_EVENT, "event_time": when}).encode()
    result = parse_body(body)
    assert isinstance(result, Rejection)
    assert result.reason is Reason.INVALID_TIME


# -- issue 13: times and identities mean one thing ------------------------------------------


def test_format_time_pads_years_before_1000_so_keys_sort_as_time() -> None:
    early, late = datetime(999, 6, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
    assert format_time(early) == "0999-06-01T00:00:00.000000Z"
    assert format_time(early)[:10] == "0999-06-01"  # the day key
    assert sorted([format_time(late), format_time(early)]) == [
        format_time(early),
        format_time(late),
    ]


def test_an_event_before_year_1000_keeps_a_four_digit_time() -> None:
    event = parse_body(json.dumps({**GUIDE_EVENT, "event_time": "0999-06-01T10:00:00Z"}).encode())
    assert isinstance(event, Event)
    assert format_time(event.event_time) == "0999-06-01T10:00:00.000000Z"


@pytest.mark.parametrize(
    "text",
    [
        "2025-W52-7T10:00:00Z",  # ISO week date
        "2025-362T10:00:00Z",  # ordinal date
        "20251228T100000Z",  # basic format
        "2025-12-28T10:00:00+0100",  # offset without a colon
        "2025-12-28T10:00:00+01:00:30",  # second-level offset
        "2025-12-28T10:00:00,5Z",  # comma fraction
        "2025-12-28T10Z",  # no minutes or seconds
        "2025-12-28T10:00Z",
        "999-06-01T00:00:00Z",  # a three-digit year
        "2025-12-28X10:00:00Z",
    ],
)
def test_times_outside_rfc_3339_are_invalid_time(text: str) -> None:
    rejection = parse_body(json.dumps({**GUIDE_EVENT, "event_time": text}).encode())
    assert isinstance(rejection, Rejection)
    assert rejection.reason is Reason.INVALID_TIME, rejection
    with pytest.raises(ValueError):
        parse_time(text)


def test_a_time_out_of_range_in_utc_is_invalid_time_not_invalid_field() -> None:
    for when in (
        "0001-01-01T00:30:00+01:00",
        "9999-12-31T23:30:00-01:00",
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
    ):
        rejection = parse_event({**GUIDE_EVENT, "event_time": when})
        assert isinstance(rejection, Rejection)
        assert rejection.reason is Reason.INVALID_TIME, rejection
        assert "out of range" in rejection.detail


def test_two_instants_a_tenth_of_a_microsecond_apart_never_share_an_identity() -> None:
    # Sub-microsecond precision cannot be kept (identity and archive are in microseconds), so
    # it is refused rather than truncated into another event's identity.
    first = parse_body(
        json.dumps({**GUIDE_EVENT, "event_time": "2025-12-28T10:00:00.1234561Z"}).encode()
    )
    second = parse_body(
        json.dumps({**GUIDE_EVENT, "event_time": "2025-12-28T10:00:00.1234569Z"}).encode()
    )
    for rejection in (first, second):
        assert isinstance(rejection, Rejection)
        assert rejection.reason is Reason.INVALID_TIME
        assert "sub-microsecond" in rejection.detail


def test_trailing_zeros_past_the_microsecond_are_the_same_instant() -> None:
    assert parse_time("2025-12-28T10:00:00.1234560000Z") == parse_time(
        "2025-12-28T10:00:00.123456Z"
    )
    assert parse_time("2025-12-28 10:00:00.5z") == datetime(2025, 12, 28, 10, 0, 0, 500000, UTC)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"source":"a","source":"b","event_type":"t","entity_id":"e",'
        b'"event_time":"2025-12-28T10:00:00Z","payload":{}}',
        b'{"source":"a","event_type":"t","entity_id":"e",'
        b'"event_time":"2025-12-28T10:00:00Z","payload":{"n":1,"n":2}}',
        b'{"source":"a","event_type":"t","entity_id":"e",'
        b'"event_time":"2025-12-28T10:00:00Z","payload":{"list":[{"k":1,"k":1}]}}',
        b'{"source":"a","\\u0073ource":"b","event_type":"t","entity_id":"e",'
        b'"event_time":"2025-12-28T10:00:00Z","payload":{}}',
    ],
)
def test_an_object_with_a_duplicate_key_is_rejected_as_duplicate_key(raw: bytes) -> None:
    rejection = parse_body(raw)
    assert isinstance(rejection, Rejection)
    assert rejection.reason is Reason.DUPLICATE_KEY
    assert "appears twice" in rejection.detail


def test_one_key_in_two_objects_is_no_duplicate() -> None:
    raw = (
        b'{"source":"a","event_type":"t","entity_id":"e","event_time":"2025-12-28T10:00:00Z",'
        b'"payload":{"a":{"id":1},"b":{"id":1},"s":"say \\"id\\""}}'
    )
    assert isinstance(parse_body(raw), Event)
