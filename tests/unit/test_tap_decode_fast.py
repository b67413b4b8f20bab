"""consumers/tap/decode.py: the streamlined binding → envelope mapping gives exactly what the
mapping gave before it (same events, same rejections with the same reasons and details)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.tap import decode
from consumers.tap.binding import TapBinding, binding_from_table
from consumers.tap.decode import RecordDecoder
from schemas.envelope import Event, Rejection
from tests.unit.test_envelope_fast import (
    JSON_VALUES,
    VALID_TEXT,
    mostly,
    reference_decode_json,
    reference_parse_event,
    same_outcome,
)

ARRIVAL = datetime(2025, 12, 29, 0, 30, tzinfo=UTC)
BINDINGS = [
    binding_from_table(table)
    for table in (
        {  # the shape `pik produce` writes
            "stream": "s",
            "source": "checkout",
            "event_type": "$.type",
            "entity_id": "$.customer.id",
            "event_time": "$.ts",
            "idempotency_key": "$.event_id",
        },
        {"stream": "s", "event_type": "$.type"},  # source from the record, the rest defaults
        {"stream": "s", "source": "$.a.b.c", "event_type": "kind", "entity_id": "$.items.1"},
        {"stream": "s", "event_time": "$.when", "idempotency_key": "$.key"},
    )
]


# -- the reference: RecordDecoder._mapped as it was, on the reference parsers -------------------


def reference_parse(binding: TapBinding, raw: bytes, partition_key: str) -> Event | Rejection:
    parsed = _reference_parse(binding, raw, partition_key)
    if isinstance(parsed, Rejection):  # a rejection keeps the binding's constants
        for name in ("source", "event_type"):
            spec = getattr(binding, name)
            if spec is not None and spec.constant is not None:
                parsed = dataclasses.replace(parsed, **{name: spec.constant})
    return parsed


def _reference_parse(binding: TapBinding, raw: bytes, partition_key: str) -> Event | Rejection:
    value = reference_decode_json(raw)
    if isinstance(value, Rejection):
        return value
    if not isinstance(value, dict):
        kind = type(value).__name__ if value is not None else "null"
        return Rejection(decode.Reason.NOT_AN_OBJECT, f"expected a JSON object, got {kind}")
    fields: dict[str, Any] = {}
    known: dict[str, str | None] = {"source": None, "event_type": None, "entity_id": None}

    def reject(reason: decode.Reason, detail: str) -> Rejection:
        return Rejection(
            reason,
            detail,
            source=known["source"],
            event_type=known["event_type"],
            entity_id=known["entity_id"],
        )

    plan: list[tuple[str, Any, Any]] = []
    for name in ("source", "event_type"):
        spec = getattr(binding, name)
        if spec is None:
            spec = decode.FieldSpec(path=(name,))
        plan.append((name, spec, None))
    plan.append(("entity_id", binding.entity_id, decode._FROM_PARTITION_KEY))
    plan.append(("idempotency_key", binding.idempotency_key, None))
    for name, spec, fallback in plan:
        if spec is not None:
            found = decode._lookup(spec, value)
        elif fallback is decode._FROM_PARTITION_KEY:
            found = partition_key
        else:
            found = fallback
        if found is decode._MISSING:
            return reject(decode.Reason.MISSING_FIELD, f"{name}: {spec or 'not mapped'} is missing")
        if found is None:
            continue
        text = found if type(found) is str else decode._text(found)
        if text is None:
            return reject(
                decode.Reason.INVALID_FIELD,
                f"{name}: {spec} is a {type(found).__name__}, expected a string",
            )
        fields[name] = text
        if name in known:
            known[name] = text
    spec = binding.event_time
    when = ARRIVAL if spec is None else decode._lookup(spec, value)
    if when is decode._MISSING:
        return reject(decode.Reason.MISSING_FIELD, f"event_time: {spec} is missing")
    stamp = decode._time(when)
    if isinstance(stamp, str):
        return reject(
            decode.Reason.INVALID_TIME,
            f"event_time: {spec} = {str(when)[:64]!r} is not a "
            f"time with a UTC offset or an epoch number{stamp}",
        )
    fields["event_time"] = stamp
    fields["payload"] = decode._payload(raw, value, binding.format)
    return reference_parse_event(fields)


# -- records -----------------------------------------------------------------------------------

TEXTISH = st.one_of(
    st.text(st.characters(codec="ascii"), min_size=1, max_size=8),
    st.text(max_size=8),
    st.sampled_from(["", "x" * 129, "y" * 257]),
    st.integers(-5, 10**20),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.sampled_from(["id", "b", "c"]), st.text(max_size=3), max_size=2),
)
TIME_TEXT = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
).map(lambda t: t.isoformat().replace("+00:00", "Z"))
TIMEISH = st.one_of(
    TIME_TEXT,
    st.sampled_from(
        [
            "2025-12-29T00:29:59.5+01:00",
            "29/12/2025 10:00",
            "2025-12-29",
            "",
            "0001-01-01T00:00:00+02:00",  # before year 1 in UTC
            "0001-01-01T00:30:00+01:00",
            "0999-06-01T00:00:00Z",
            "2025-W52-7T10:00:00Z",  # not RFC 3339: week date, basic format, offsets, comma
            "20251228T100000Z",
            "2025-12-28T10:00:00+0100",
            "2025-12-28T10:00:00+01:00:30",
            "2025-12-28T10:00:00,5Z",
            "2025-12-28T10:00:00.1234561Z",  # finer than a microsecond
            "2025-12-28T10:00:00.1234560Z",
        ]
    ),
    st.integers(-(10**15), 10**15),
    st.floats(allow_nan=False),
    st.none(),
    st.booleans(),
)


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    doc: dict[str, Any] = {}
    for name in ("type", "source", "event_id", "key", "when", "ts"):
        if draw(st.integers(0, 5)) != 3:
            timely = name in ("ts", "when")
            doc[name] = draw(mostly(TIME_TEXT, TIMEISH) if timely else mostly(VALID_TEXT, TEXTISH))
    if draw(st.integers(0, 5)) != 3:
        customer = st.fixed_dictionaries({"id": mostly(VALID_TEXT, TEXTISH)})
        doc["customer"] = draw(mostly(customer, st.one_of(TEXTISH, st.just({}))))
    if draw(st.booleans()):
        doc["a"] = {"b": {"c": draw(TEXTISH)}} if draw(st.booleans()) else draw(TEXTISH)
    if draw(st.booleans()):
        doc["items"] = draw(st.lists(TEXTISH, max_size=3))
    doc.update(draw(st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=3)))
    raw = json.dumps(doc).encode()
    if draw(st.integers(0, 9)) == 5 and doc:  # a key named twice (top level or in customer)
        key = draw(st.sampled_from(sorted(doc)))
        raw = b"{" + json.dumps(key).encode() + b": 0, " + raw[1:]
        if draw(st.booleans()) and isinstance(doc.get("customer"), dict) and doc["customer"]:
            raw = json.dumps(doc).encode().replace(b'"customer": {', b'"customer": {"id": 1, ', 1)
    if draw(st.integers(0, 19)) == 5:  # now and then
        raw = draw(st.sampled_from([b"[1, 2]", b"null", b"{bad", raw[: len(raw) // 2], b"\xff"]))
    return raw


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BINDINGS), documents(), st.text(min_size=1, max_size=6))
def test_mapping_is_the_reference(binding: TapBinding, raw: bytes, partition_key: str) -> None:
    fast, _ = RecordDecoder(binding).parse(raw, partition_key, ARRIVAL)
    same_outcome(fast, reference_parse(binding, raw, partition_key))


def test_the_produce_workload_maps_as_the_reference() -> None:
    from producers.produce import ProduceSpec, generate

    decoder = RecordDecoder(BINDINGS[0])
    spec = ProduceSpec(count=400, duplicates=0.05, bad=0.2, late=0.1, seed=3)
    events = 0
    for produced in generate(spec, ARRIVAL):
        fast, _ = decoder.parse(produced.body, produced.partition_key, ARRIVAL)
        same_outcome(fast, reference_parse(BINDINGS[0], produced.body, produced.partition_key))
        events += isinstance(fast, Event)
    assert 250 < events < 400


def test_a_time_before_year_one_in_utc_is_rejected_not_raised() -> None:
    raw = json.dumps(
        {"type": "t", "customer": {"id": "c"}, "event_id": "k", "ts": "0001-01-01T00:00:00+02:00"}
    )
    parsed, _ = RecordDecoder(BINDINGS[0]).parse(raw.encode(), "pk", ARRIVAL)
    assert isinstance(parsed, Rejection)
    assert parsed.reason is decode.Reason.INVALID_TIME
    assert parsed.entity_id == "c"
