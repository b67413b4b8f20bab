"""consumers/tap/decode.py: each record becomes a Submission whose parsed value is an Event or a
Rejection (never an exception), with its raw bytes exactly as read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from consumers.tap.binding import TapBinding, binding_from_table
from consumers.tap.decode import RecordDecoder, StreamRecord
from pik.cli.schemas import demo_registry_folder
from schemas.envelope import Event, Reason, Rejection, Status
from schemas.kpl import aggregate
from schemas.registry import SchemaRegistry, encode_confluent, encode_single_object
from tests.unit.support import MemoryKit

ARRIVAL = datetime(2025, 12, 29, 0, 30, tzinfo=UTC)
ORDERS = binding_from_table(
    {
        "stream": "orders",
        "source": "orders-service",
        "event_type": "$.type",
        "entity_id": "$.customer.id",
        "event_time": "$.ts",
        "idempotency_key": "$.order_id",
    }
)
ORDER = {
    "type": "order_placed",
    "customer": {"id": "c-1"},
    "ts": "2025-12-29T00:29:59.5+01:00",
    "order_id": "o-1",
    "amount": 12.5,
}


def record(data: bytes, seq: str = "7", key: str = "pk-1") -> StreamRecord:
    return StreamRecord("orders", "shardId-000000000001", seq, key, ARRIVAL, data)


def parse(binding: TapBinding, data: bytes, **kw: Any) -> Event | Rejection:
    (sub,) = RecordDecoder(binding, SchemaRegistry.load(demo_registry_folder())).submissions(
        record(data, **kw)
    )
    assert sub.raw == data
    return sub.parsed


def test_foreign_json_is_mapped_by_the_binding() -> None:
    raw = json.dumps(ORDER).encode()
    (sub,) = RecordDecoder(ORDERS).submissions(record(raw))
    event = sub.parsed
    assert isinstance(event, Event)
    assert (event.source, event.event_type, event.entity_id) == (
        "orders-service",
        "order_placed",
        "c-1",
    )
    assert event.event_time == datetime(2025, 12, 28, 23, 29, 59, 500000, tzinfo=UTC)
    assert event.idempotency_key == "o-1"
    assert event.payload == ORDER
    assert sub.raw == raw
    assert sub.position == "7.0"
    p = sub.provenance
    assert p.occurrence_id == "kinesis:orders:shardId-000000000001:7:0"
    assert (p.origin, p.stream, p.shard_id, p.sequence_number, p.sub_sequence_number) == (
        "kinesis",
        "orders",
        "shardId-000000000001",
        "7",
        0,
    )
    assert (p.partition_key, p.arrival_time) == ("pk-1", ARRIVAL)


def test_metadata_defaults_partition_key_and_arrival_time() -> None:
    binding = binding_from_table({"stream": "s", "source": "web", "event_type": "click"})
    event = parse(binding, b'{"x": 1}', key="user_9")
    assert isinstance(event, Event)
    assert (event.entity_id, event.event_time, event.idempotency_key) == ("user_9", ARRIVAL, None)


def test_envelope_records_need_no_mapping() -> None:
    envelope = {"source": "demo", "event_type": "heartbeat", "payload": {"steps": 10}}
    event = parse(binding_from_table({"stream": "s"}), json.dumps(envelope).encode())
    assert isinstance(event, Event)
    assert (event.entity_id, event.event_time, event.payload) == ("pk-1", ARRIVAL, {"steps": 10})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1767000000, datetime(2025, 12, 29, 9, 20, tzinfo=UTC)),
        (1767000000250, datetime(2025, 12, 29, 9, 20, 0, 250000, tzinfo=UTC)),
    ],
)
def test_epoch_seconds_and_millis(value: int, expected: datetime) -> None:
    event = parse(ORDERS, json.dumps({**ORDER, "ts": value}).encode())
    assert isinstance(event, Event) and event.event_time == expected


def test_numeric_ids_become_text() -> None:
    event = parse(ORDERS, json.dumps({**ORDER, "customer": {"id": 42}}).encode())
    assert isinstance(event, Event) and event.entity_id == "42"


@pytest.mark.parametrize(
    ("data", "reason", "detail"),
    [
        (b"\xff\xfe garbage", Reason.INVALID_UTF8, "UTF-8"),
        (b"not json", Reason.INVALID_JSON, "JSON"),
        (b"[1, 2]", Reason.NOT_AN_OBJECT, "list"),
        (json.dumps({**ORDER, "customer": {}}).encode(), Reason.MISSING_FIELD, "$.customer.id"),
        (json.dumps({**ORDER, "type": None}).encode(), Reason.MISSING_FIELD, "$.type"),
        (json.dumps({**ORDER, "ts": "yesterday"}).encode(), Reason.INVALID_TIME, "yesterday"),
        (json.dumps({**ORDER, "ts": "2025-12-29T00:00:00"}).encode(), Reason.INVALID_TIME, "ts"),
        (json.dumps({**ORDER, "customer": {"id": [1]}}).encode(), Reason.INVALID_FIELD, "list"),
        (json.dumps({**ORDER, "type": ""}).encode(), Reason.EMPTY_FIELD, "event_type"),
    ],
)
def test_records_that_do_not_fit_are_rejections(data: bytes, reason: Reason, detail: str) -> None:
    rejection = parse(ORDERS, data)
    assert isinstance(rejection, Rejection)
    assert rejection.reason is reason
    assert detail in rejection.detail


def test_a_rejection_keeps_what_it_knew() -> None:
    rejection = parse(ORDERS, json.dumps({**ORDER, "ts": "never"}).encode())
    assert isinstance(rejection, Rejection)
    assert (rejection.source, rejection.event_type, rejection.entity_id) == (
        "orders-service",
        "order_placed",
        "c-1",
    )


def test_oversized_records_are_rejected() -> None:
    decoder = RecordDecoder(ORDERS, max_event_bytes=10)
    (sub,) = decoder.submissions(record(json.dumps(ORDER).encode()))
    assert isinstance(sub.parsed, Rejection) and sub.parsed.reason is Reason.TOO_LARGE


AVRO_ORDER = {
    "order_id": "o-9",
    "customer_id": "c-9",
    "amount_cents": 1999,
    "currency": "EUR",
    "ts": datetime(2025, 12, 28, 22, 0, tzinfo=UTC),
}


@pytest.mark.parametrize("fmt", ["avro-confluent", "avro-single-object"])
def test_avro_in_both_framings(fmt: str) -> None:
    registry = SchemaRegistry.load(demo_registry_folder())
    entry = registry.get("orders-service", "order_placed", 1)
    assert entry is not None
    encode = encode_confluent if fmt == "avro-confluent" else encode_single_object
    raw = encode(entry, AVRO_ORDER)
    binding = binding_from_table(
        {"stream": "orders", "format": fmt, "entity_id": "$.customer_id", "event_time": "$.ts"}
    )
    (sub,) = RecordDecoder(binding, registry).submissions(record(raw))
    event = sub.parsed
    assert isinstance(event, Event), event
    # source and event type come from where the schema is registered
    assert (event.source, event.event_type, event.entity_id) == (
        "orders-service",
        "order_placed",
        "c-9",
    )
    assert event.event_time == AVRO_ORDER["ts"]
    assert event.payload["amount_cents"] == 1999
    assert sub.schema_fingerprint == entry.fingerprint
    assert sub.raw == raw


@pytest.mark.parametrize(
    ("fmt", "data", "reason", "named"),
    [
        ("avro-confluent", b'{"json": true}', Reason.UNDECODABLE, "not Confluent Avro"),
        (
            "avro-confluent",
            b"\x00\x00\x00\x03\xe7\x02",
            Reason.UNKNOWN_SCHEMA,
            "Confluent framing: schema id 999 ",
        ),
        (
            "avro-single-object",
            b"\xc3\x01" + b"\xab" * 8 + b"\x02",
            Reason.UNKNOWN_SCHEMA,
            "single-object framing: schema fingerprint abababababababab ",
        ),
        ("avro-single-object", b"\xc3", Reason.UNDECODABLE, "not Avro single-object"),
    ],
)
def test_bad_avro_is_rejected_naming_the_framing_and_the_id(
    fmt: str, data: bytes, reason: Reason, named: str
) -> None:
    binding = binding_from_table({"stream": "orders", "format": fmt})
    rejection = parse(binding, data)
    assert isinstance(rejection, Rejection) and rejection.reason is reason, rejection
    assert named in rejection.detail


def test_a_schema_mismatch_names_the_schema_and_the_id_the_record_gave() -> None:
    registry = SchemaRegistry.load(demo_registry_folder())
    binding = binding_from_table({"stream": "orders", "format": "avro-confluent"})
    record_ = record(b"\x00\x00\x00\x00\x01\x02")
    [sub] = RecordDecoder(binding, registry).submissions(record_)
    rejection = sub.parsed
    assert isinstance(rejection, Rejection) and rejection.reason is Reason.SCHEMA_MISMATCH
    assert "orders-service/order_placed/v1 (Confluent schema id 1)" in rejection.detail


def test_trailing_bytes_after_an_avro_body_are_a_mismatch() -> None:
    registry = SchemaRegistry.load(demo_registry_folder())
    entry = registry.get("orders-service", "order_placed", 1)
    assert entry is not None
    binding = binding_from_table({"stream": "orders", "format": "avro-confluent"})
    rejection = parse(binding, encode_confluent(entry, AVRO_ORDER) + b"\x00")
    assert isinstance(rejection, Rejection) and rejection.reason is Reason.SCHEMA_MISMATCH


def test_raw_records_are_opaque_with_content_identity() -> None:
    binding = binding_from_table(
        {"stream": "s", "format": "raw", "source": "legacy", "event_type": "blob"}
    )
    first, second = parse(binding, b"\x00\x01"), parse(binding, b"\x00\x02")
    assert isinstance(first, Event) and isinstance(second, Event)
    assert first.payload["raw_bytes"] == 2
    assert first.payload != second.payload


def test_kpl_aggregates_are_de_aggregated_in_every_format() -> None:
    users = [(f"c-{i}", json.dumps({**ORDER, "order_id": f"o-{i}"}).encode()) for i in range(5)]
    (agg,) = aggregate(users)
    subs = RecordDecoder(ORDERS).submissions(record(agg.data, seq="42"))
    assert [s.position for s in subs] == [f"42.{i}" for i in range(5)]
    assert [s.raw for s in subs] == [data for _, data in users]
    assert [s.provenance.partition_key for s in subs] == [key for key, _ in users]
    assert all(isinstance(s.parsed, Event) for s in subs)


def test_a_corrupt_aggregate_is_one_rejection_holding_the_whole_record() -> None:
    (agg,) = aggregate([("k", b'{"a": 1}'), ("k", b'{"a": 2}')])
    corrupt = agg.data[:-1] + bytes([agg.data[-1] ^ 1])
    (sub,) = RecordDecoder(ORDERS).submissions(record(corrupt))
    assert isinstance(sub.parsed, Rejection)
    assert sub.parsed.reason is Reason.UNDECODABLE and "MD5" in sub.parsed.detail
    assert sub.raw == corrupt
    assert sub.parsed.source == "orders-service"


def test_through_the_sink_statuses_and_raw_bytes_hold() -> None:
    kit = MemoryKit()
    good = json.dumps(ORDER).encode()
    (agg,) = aggregate([("c-1", good), ("c-2", json.dumps({**ORDER, "order_id": "o-2"}).encode())])
    decoder = RecordDecoder(ORDERS)
    subs = [
        *decoder.submissions(record(good, seq="1")),
        *decoder.submissions(record(good, seq="2")),  # a producer retry: DUPLICATE
        *decoder.submissions(record(b"garbage", seq="3")),
        *decoder.submissions(record(agg.data, seq="4")),  # o-1 again inside: DUPLICATE
    ]
    results = kit.sink.ingest(subs, label="orders-shard1", at=ARRIVAL)
    assert [r.status for r in results] == [
        Status.ACCEPTED,
        Status.DUPLICATE,
        Status.REJECTED,
        Status.DUPLICATE,
        Status.ACCEPTED,
    ]
    again = kit.sink.ingest(subs, label="orders-shard1", at=ARRIVAL)
    assert all(r.redelivery or r.status is Status.REJECTED for r in again)


# -- issue 13 ----------------------------------------------------------------------------------

CONSTANT = binding_from_table(
    {"stream": "orders", "source": "orders-service", "event_type": "order", "entity_id": "$.c"}
)


@pytest.mark.parametrize(
    ("binding", "data", "reason"),
    [
        (CONSTANT, b"not json at all", Reason.INVALID_JSON),
        (CONSTANT, b"[1, 2]", Reason.NOT_AN_OBJECT),
        (CONSTANT, b'{"x": 1}', Reason.MISSING_FIELD),
        (CONSTANT, b'{"c": "e", "c": "f"}', Reason.DUPLICATE_KEY),
        (CONSTANT, b"x" * 300_000, Reason.TOO_LARGE),
        (ORDERS, b"\xff\xfe", Reason.INVALID_UTF8),
        (ORDERS, b'{"customer": {"id": "c-1"}}', Reason.MISSING_FIELD),  # no $.type
    ],
)
def test_a_rejected_record_keeps_the_bindings_constant_source_and_event_type(
    binding: TapBinding, data: bytes, reason: Reason
) -> None:
    rejection = parse(binding, data)
    assert isinstance(rejection, Rejection)
    assert rejection.reason is reason
    assert rejection.source == "orders-service"
    if binding is CONSTANT:
        assert rejection.event_type == "order"


def test_a_bound_stream_rejects_duplicate_keys_at_any_depth() -> None:
    for data in (
        b'{"type": "a", "type": "b", "customer": {"id": "c-1"}, "ts": "2025-12-28T10:00:00Z"}',
        b'{"type": "a", "customer": {"id": "c-1", "id": "c-2"}, "ts": "2025-12-28T10:00:00Z"}',
        b'{"type": "a", "customer": {"id": "c-1"}, "ts": "2025-12-28T10:00:00Z",'
        b' "lines": [{"sku": 1, "sku": 2}]}',
    ):
        rejection = parse(ORDERS, data)
        assert isinstance(rejection, Rejection)
        assert rejection.reason is Reason.DUPLICATE_KEY, rejection
    envelope = binding_from_table({"stream": "plain"})
    rejection = parse(envelope, b'{"source": "a", "source": "b"}')
    assert isinstance(rejection, Rejection)
    assert rejection.reason is Reason.DUPLICATE_KEY


@pytest.mark.parametrize(
    "ts",
    [
        "2025-W52-7T10:00:00Z",
        "20251228T100000Z",
        "2025-12-28T10:00:00+0100",
        "2025-12-28T10:00:00,5Z",
        "0001-01-01T00:30:00+01:00",
        "2025-12-28T10:00:00.1234561Z",
    ],
)
def test_a_bound_streams_time_outside_the_contract_is_invalid_time(ts: str) -> None:
    rejection = parse(ORDERS, json.dumps({**ORDER, "ts": ts}).encode())
    assert isinstance(rejection, Rejection)
    assert rejection.reason is Reason.INVALID_TIME, rejection
    assert rejection.source == "orders-service"
