"""schemas/identity.py: the fast canonical form (orjson where it prints the same, the standard
encoder otherwise) is the reference definition, byte for byte, and so is every event id."""

from __future__ import annotations

import enum
import hashlib
import json
import math
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.envelope import Event, format_time, parse_event
from schemas.identity import canonical_json, event_id

# -- the reference: schemas/identity.py as it was before the fast paths --------------------------


def reference_normalise(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: reference_normalise(item) for key, item in value.items()}
    if isinstance(value, list):
        return [reference_normalise(item) for item in value]
    return value


def reference_canonical_json(value: Any) -> str:
    return json.dumps(
        reference_normalise(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def reference_event_id(event: Event) -> str:
    head = ["pik.v1", event.source, event.event_type, event.entity_id]
    parts: list[Any]
    if event.idempotency_key is not None:
        parts = [*head, "key", event.idempotency_key]
    else:
        parts = [*head, "content", format_time(event.event_time), event.payload]
    return hashlib.sha256(reference_canonical_json(parts).encode("utf-8")).hexdigest()


def same_outcome(value: Any) -> None:
    """canonical_json(value) is the reference's text, or raises as the reference does."""
    try:
        expected = reference_canonical_json(value)
    except Exception as exc:
        with pytest.raises(type(exc)):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


# -- values ------------------------------------------------------------------------------------

FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1e-3, max_value=1e-3),  # where orjson and repr print differently
    st.integers(-(2**60), 2**60).map(float),  # integral floats: printed as integers
    st.integers(-(10**6), 10**6).map(lambda n: n / 100),  # money
    st.sampled_from([0.0, -0.0, 1e16, 2.0**53, 2.0**53 + 2, 1e-5, 1e-7, 5e-324, 1e308, 0.1]),
    # every decimal exponent, where the printers switch between fixed and exponent notation
    st.builds(
        lambda digits, exponent: float(f"{digits}e{exponent}"),
        st.decimals(min_value=1, max_value=10, places=8, allow_nan=False),
        st.integers(-323, 308),
    ).filter(math.isfinite),
)
INTEGERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1]),
)
TEXTS = st.one_of(
    st.text(),
    st.text(st.characters(codec="utf-8", max_codepoint=0x7F)),
    st.sampled_from(["", "é", "\u2028", "\x00", "\x7f", '"\\', "𝄞", "1.0,", ".0]", "\ufeff"]),
)
SCALARS = st.one_of(st.none(), st.booleans(), INTEGERS, FLOATS, TEXTS)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(TEXTS, inner, max_size=5)),
    max_leaves=30,
)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_VALUES)
def test_canonical_json_is_the_reference(value: Any) -> None:
    same_outcome(value)


@settings(max_examples=300)
@given(FLOATS)
def test_floats_print_as_the_reference(value: float) -> None:
    same_outcome(value)
    same_outcome({"v": value, "w": [value, -value]})


def test_every_code_point_and_key_order_match() -> None:
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    same_outcome(every)
    same_outcome({chr(c): c for c in range(0, 0x110000, 89) if not 0xD800 <= c < 0xE000})


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Text(str):
    pass


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        {"x": float("inf")},
        [float("-inf")],
        {1: "int key"},
        {None: 1, "a": 2},
        {"t": (1, 2.0, "x")},
        {"a": None, "b": [1, {"c": float("nan")}]},  # orjson prints NaN as the null beside it
        (None, [0.5, float("inf")]),
        {"a": None, "b": [0.5, None]},
        {"l": Level.HIGH},
        {"s": Text("sub")},
        {"d": datetime(2025, 1, 1, tzinfo=UTC)},
        "\ud800",  # a lone surrogate: the reference prints it, orjson refuses
        {"k\udc00": 1},
        2**64,
        [[[[[]]]]],
        {"a": {"b": {"c": [1.5, 2.0, {"d": -0.0}]}}},
    ],
)
def test_odd_values_print_or_fail_as_the_reference(value: Any) -> None:
    same_outcome(value)


def test_values_only_orjson_prints_print_as_it_prints_them() -> None:
    """Not JSON values (no decoded event holds one): the reference refuses them, the fast path
    takes orjson's print. Documented in ``_orjson_text``; pinned so that a change is seen."""
    for value, text in (
        ({"u": uuid.UUID(int=5)}, '{"u":"00000000-0000-0000-0000-000000000005"}'),
        ({"e": Colour.RED}, '{"e":"red"}'),
    ):
        with pytest.raises(TypeError):
            reference_canonical_json(value)
        assert canonical_json(value) == text


def test_a_cycle_fails_as_the_reference() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    same_outcome(loop)
    same_outcome({"x": loop})


# -- event ids ---------------------------------------------------------------------------------

ENVELOPE_TEXT = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() == s or True)
TIMES = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries(
        {
            "source": ENVELOPE_TEXT,
            "event_type": ENVELOPE_TEXT,
            "entity_id": ENVELOPE_TEXT,
            "event_time": TIMES,
            "payload": st.dictionaries(TEXTS, JSON_VALUES, max_size=6),
        },
        optional={"idempotency_key": st.one_of(st.none(), ENVELOPE_TEXT)},
    )
)
def test_event_id_is_the_reference(fields: dict[str, Any]) -> None:
    event = parse_event(fields)
    if not isinstance(event, Event):  # e.g. text the model refuses (a lone surrogate)
        return
    try:
        expected = reference_event_id(event)
    except Exception as exc:
        with pytest.raises(type(exc)):
            event_id(event)
        return
    assert event_id(event) == expected
    # as the ingest sink calls it: the payload printed once, for the identity and the archive
    assert event_id(event, canonical_json(event.payload)) == expected


def test_money_and_integral_amounts_keep_their_ids() -> None:
    for amount in (10.0, 10.5, 0.1, 123.45, 1e-5, -0.0, 2.0**60):
        fields = {
            "source": "s",
            "event_type": "t",
            "entity_id": "e",
            "event_time": "2025-12-28T23:59:59Z",
            "payload": {"amount": {"value": amount}, "items": [amount, 1]},
        }
        event = parse_event(fields)
        assert isinstance(event, Event)
        assert event_id(event) == reference_event_id(event)
        assert event_id(event, canonical_json(event.payload)) == reference_event_id(event)
        assert not math.isnan(amount)
