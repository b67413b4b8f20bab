"""consumers/tap/fastmap.py: a binding's generated mapping builds the very event the general
mapping builds, or steps aside (None); and on a plain workload it is the path records take."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.tap.binding import TapBinding, binding_from_table
from consumers.tap.decode import RecordDecoder
from consumers.tap.fastmap import fast_mapper
from infra.kinesis import StreamRecord
from schemas.envelope import Event, decode_json
from tests.unit.test_envelope_fast import same_outcome
from tests.unit.test_tap_decode_fast import BINDINGS, documents

ARRIVAL = datetime(2025, 12, 29, 0, 30, tzinfo=UTC)
MORE_BINDINGS = [
    *BINDINGS,
    binding_from_table({"stream": "s", "event_time": "2025-01-01T00:00:00+01:00"}),  # constant
    binding_from_table({"stream": "s", "source": "$", "event_type": "$.deep.er.est"}),
]


def general(binding: TapBinding, value: dict[str, Any], key: str) -> Any:
    decoder = RecordDecoder(binding)
    return decoder._mapped(json.dumps(value).encode(), value, None, key, ARRIVAL)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MORE_BINDINGS), documents(), st.text(min_size=1, max_size=6))
def test_generated_mapping_is_the_general_one_or_steps_aside(
    binding: TapBinding, raw: bytes, partition_key: str
) -> None:
    value = decode_json(raw)
    if type(value) is not dict:
        return
    fast = fast_mapper(binding)
    assert fast is not None
    event = fast(value, partition_key, ARRIVAL)
    if event is not None:
        same_outcome(event, general(binding, value, partition_key))


def test_plain_records_take_the_generated_path() -> None:
    from producers.produce import ProduceSpec, generate

    fast = fast_mapper(BINDINGS[0])
    assert fast is not None
    taken = 0
    for produced in generate(ProduceSpec(count=300, bad=0.0, seed=5), ARRIVAL):
        value = decode_json(produced.body)
        event = fast(value, produced.partition_key, ARRIVAL)
        assert isinstance(event, Event)
        same_outcome(event, general(BINDINGS[0], value, produced.partition_key))
        taken += 1
    assert taken == 300


@pytest.mark.parametrize(
    "value",
    [
        {"type": "t", "customer": {"id": 7}, "event_id": "k", "ts": "2025-12-29T00:00:00Z"},
        {"type": "t", "customer": ["id"], "event_id": "k", "ts": "2025-12-29T00:00:00Z"},
        {"type": "t", "customer": {"id": "c"}, "event_id": "k", "ts": 1766966400},
        {"type": "t", "customer": {"id": "c"}, "event_id": "k", "ts": "not a time"},
        {"type": "é", "customer": {"id": "c"}, "event_id": "k", "ts": "2025-12-29T00:00:00Z"},
        {"type": "t", "customer": {"id": "c"}, "ts": "2025-12-29T00:00:00Z"},
        {"type": "t" * 129, "customer": {"id": "c"}, "event_id": "k", "ts": "2025-12-29T00:00Z"},
    ],
)
def test_anything_not_plain_is_left_to_the_general_mapping(value: dict[str, Any]) -> None:
    fast = fast_mapper(BINDINGS[0])
    assert fast is not None
    assert fast(value, "pk", ARRIVAL) is None


def test_defaults_come_from_the_record_metadata() -> None:
    binding = binding_from_table({"stream": "s", "source": "src", "event_type": "$.type"})
    fast = fast_mapper(binding)
    assert fast is not None
    event = fast({"type": "t", "x": 1.5}, "the-key", ARRIVAL)
    assert isinstance(event, Event)
    assert (event.entity_id, event.event_time, event.idempotency_key) == ("the-key", ARRIVAL, None)
    assert event.model_fields_set == {"source", "event_type", "entity_id", "event_time", "payload"}
    same_outcome(event, general(binding, {"type": "t", "x": 1.5}, "the-key"))


@pytest.mark.parametrize(
    "table",
    [
        {"stream": "s"},  # the envelope's own shape: nothing to map
        {"stream": "s", "format": "raw", "source": "s", "event_type": "t"},
        {"stream": "s", "format": "avro-confluent", "event_type": "t"},
        {"stream": "s", "source": "café"},  # a constant the model may refuse: its decision
    ],
)
def test_only_mapped_json_bindings_get_one(table: dict[str, Any]) -> None:
    assert fast_mapper(binding_from_table(table)) is None


def test_submissions_name_their_occurrence_and_position_as_documented() -> None:
    record = StreamRecord("st", "shardId-1", "4961", "pk", ARRIVAL, b'{"type": "t"}')
    sub = RecordDecoder(BINDINGS[1]).submissions(record)[0]
    assert sub.provenance.occurrence_id == "kinesis:st:shardId-1:4961:0"
    assert sub.position == "4961.0"
    assert (sub.provenance.request_id, sub.provenance.origin) == (None, "kinesis")


@pytest.mark.parametrize(
    "ts",
    [
        "20251228T100000Z",
        "2025-W52-7T10:00:00Z",
        "2025-12-28T10:00:00+0100",
        "2025-12-28T10:00:00,5Z",
        "2025-12-28T10:00:00.1234561Z",
        "0001-01-01T00:30:00+01:00",
    ],
)
def test_times_outside_the_contract_step_aside_and_are_rejected_by_the_general_mapping(
    ts: str,
) -> None:
    binding = BINDINGS[0]
    value = {"type": "t", "customer": {"id": "c"}, "event_id": "k", "ts": ts}
    mapper = fast_mapper(binding)
    assert mapper is not None
    assert mapper(value, "pk", ARRIVAL) is None
    rejected = general(binding, value, "pk")
    assert rejected.reason.value == "invalid_time"
    assert rejected.source == "checkout"
