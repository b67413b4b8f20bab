"""The Kinesis tap on the embedded moto server: a stream the test creates stands for an existing
stream; producers write plain foreign JSON, KPL aggregates (aws-kinesis-agg's aggregator), Avro
in both framings and garbage; the tap archives and indexes every record exactly once."""

from __future__ import annotations

import json
import threading
import tomllib
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from consumers.tap.binding import TapBinding, binding_from_table
from consumers.tap.shard import ReaderOptions
from consumers.tap.summary import TapSummary
from consumers.tap.worker import TapOptions
from infra.kinesis_boto import BotoKinesis
from pik.cli.schemas import demo_registry_folder
from pik.config import parse_config
from pik.kit import Kit
from producers.produce import BINDING_TOML, Produced, Producer, ProduceSpec
from schemas.codec import ArchiveRecord, decode_archive
from schemas.kpl import aggregate
from schemas.registry import SchemaRegistry, encode_confluent, encode_single_object

FAST = TapOptions(reader=ReaderOptions(min_call_interval_s=0.0, idle_wait_s=0.05, limit=500))


def create_stream(kit: Kit, shards: int = 2) -> str:
    name = f"existing-{uuid.uuid4().hex[:8]}"
    kinesis = kit.clients.kinesis()
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2})
    return name


def checkout_binding(stream: str) -> TapBinding:
    return parse_config(tomllib.loads(BINDING_TOML.format(stream=stream))).taps[0]


def tap_once(kit: Kit, binding: TapBinding, **kw: Any) -> TapSummary:
    return kit.tap_worker(binding, options=FAST, **kw).run(once=True)


def archived(kit: Kit) -> list[ArchiveRecord]:
    s3 = kit.clients.s3()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=kit.names.bucket)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return [r for key in keys for r in decode_archive(kit.archive.get_file(key))]


def put(kit: Kit, stream: str, entries: list[tuple[str, bytes]]) -> None:
    out = kit.clients.kinesis().put_records(
        StreamName=stream, Records=[{"PartitionKey": k, "Data": d} for k, d in entries]
    )
    assert out["FailedRecordCount"] == 0


def test_plain_and_kpl_records_are_archived_exactly_once(kit: Kit) -> None:
    stream = create_stream(kit)
    producer = Producer(BotoKinesis(kit.clients.kinesis()), kit.clock)
    plain: list[Produced] = []
    spec = ProduceSpec(count=300, entities=20, duplicates=0.05, late=0.1, bad=0.05, seed=7)
    report = producer.run(stream, spec, keep=plain)
    kpl: list[Produced] = []
    kpl_report = producer.run(stream, ProduceSpec(count=200, kpl=True, seed=8), keep=kpl)
    (good,) = aggregate([("k", b'{"type": "x"}'), ("k", b'{"type": "y"}')])
    put(kit, stream, [("k", good.data[:-1] + bytes([good.data[-1] ^ 1])), ("k", b"\xff\x00")])

    summary = tap_once(kit, checkout_binding(stream)).to_json()

    assert kpl_report.kinesis_records < 20  # 200 user records in a few aggregates
    assert summary["user_records"] == 300 + 200 + 2
    assert summary["accepted"] == report.expected["accepted"] + kpl_report.expected["accepted"]
    assert summary["duplicates"] == report.expected["duplicate"]
    assert summary["rejected"] == report.expected["rejected"] + 2
    assert summary["reasons"]["undecodable"] == 1  # the corrupt aggregate, whole
    assert summary["redeliveries"] == 0

    records = archived(kit)
    by_occurrence = {r.provenance.occurrence_id: r for r in records}
    assert len(by_occurrence) == len(records) == 502
    assert Counter(r.raw for r in records) == Counter(
        [p.body for p in plain + kpl] + [good.data[:-1] + bytes([good.data[-1] ^ 1]), b"\xff\x00"]
    )
    aggregated = [r for r in records if r.provenance.sub_sequence_number]
    assert aggregated, "KPL user records keep their sub-sequence numbers"
    for r in records:
        p = r.provenance
        assert p.occurrence_id == (
            f"kinesis:{stream}:{p.shard_id}:{p.sequence_number}:{p.sub_sequence_number}"
        )

    again = tap_once(kit, checkout_binding(stream)).to_json()
    assert again["records"] == 0
    assert len(archived(kit)) == 502


def test_a_lost_checkpoint_is_absorbed_as_redelivery(kit: Kit) -> None:
    stream = create_stream(kit, shards=1)
    Producer(BotoKinesis(kit.clients.kinesis()), kit.clock).run(
        stream, ProduceSpec(count=120, duplicates=0.1, bad=0.1, seed=3)
    )
    first = tap_once(kit, checkout_binding(stream)).to_json()
    ddb = kit.clients.dynamodb()
    ddb.delete_item(
        TableName=kit.names.leases_table, Key={"lease_key": {"S": f"{stream}#shardId-000000000000"}}
    )
    files = len(archived(kit))

    again = tap_once(kit, checkout_binding(stream)).to_json()

    assert again["records"] == first["records"] == 120
    assert first["rejected"] > 0
    assert again["accepted"] == again["duplicates"] == 0  # no false duplicates
    assert again["rejected"] == 0  # nor rejections counted twice
    assert again["redeliveries"] == first["accepted"] + first["duplicates"] + first["rejected"]
    assert len(archived(kit)) == files


AVRO = {
    "order_id": "o-1",
    "customer_id": "c-1",
    "amount_cents": 1250,
    "currency": "EUR",
    "ts": datetime(2025, 12, 29, 0, 15, tzinfo=UTC),
}


@pytest.mark.parametrize("fmt", ["avro-confluent", "avro-single-object"])
def test_avro_in_both_framings(kit: Kit, fmt: str) -> None:
    registry = SchemaRegistry.load(demo_registry_folder())
    v1, v2 = (registry.get("orders-service", "order_placed", v) for v in (1, 2))
    assert v1 is not None and v2 is not None
    encode = encode_confluent if fmt == "avro-confluent" else encode_single_object
    bodies = [encode(v1, {**AVRO, "order_id": f"o-{n}"}) for n in range(20)] + [
        encode(v2, {**AVRO, "order_id": "o-v2", "coupon": "XMAS"}),
        encode(v1, AVRO),  # the same order again: a duplicate
        b'{"order_id": "json on an avro stream"}',
        b"\x00\x00\x00\x7f\xff\x02",  # an id nobody registered
    ]
    stream = create_stream(kit, shards=1)
    put(kit, stream, [("c-1", body) for body in bodies])
    binding = binding_from_table(
        {
            "stream": stream,
            "format": fmt,
            "entity_id": "$.customer_id",
            "event_time": "$.ts",
            "idempotency_key": "$.order_id",
        }
    )

    summary = tap_once(kit, binding, registry=registry).to_json()

    assert (summary["accepted"], summary["duplicates"], summary["rejected"]) == (21, 1, 2)
    records = archived(kit)
    assert [
        r.raw for r in sorted(records, key=lambda r: int(r.provenance.sequence_number or 0))
    ] == bodies
    accepted = [r for r in records if r.status == "ACCEPTED"]
    assert {r.schema_fingerprint for r in accepted} == {v1.fingerprint, v2.fingerprint}
    assert {(r.source, r.event_type) for r in accepted} == {("orders-service", "order_placed")}
    assert (
        json.loads(next(r.payload for r in accepted if "XMAS" in (r.payload or "")) or "{}")[
            "coupon"
        ]
        == "XMAS"
    )


def test_throttling_is_backed_off_through_the_real_client(kit: Kit) -> None:
    """moto never throttles: a botocore hook answers the first GetRecords calls with AWS's
    ProvisionedThroughputExceededException, as a client wrapper would."""
    stream = create_stream(kit, shards=1)
    put(
        kit,
        stream,
        [
            (
                "k",
                json.dumps(
                    {
                        "type": "t",
                        "customer": {"id": "c"},
                        "ts": "2025-12-29T00:00:00Z",
                        "event_id": str(n),
                    }
                ).encode(),
            )
            for n in range(10)
        ],
    )
    left = {"n": 3}

    def throttle(**_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if left["n"] <= 0:
            return None
        left["n"] -= 1
        error = {
            "Error": {"Code": "ProvisionedThroughputExceededException", "Message": "Rate exceeded"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return AWSResponse("http://x", 400, HTTPHeaders(), None), error

    kinesis = kit.clients.kinesis()
    kinesis.meta.events.register("before-call.kinesis.GetRecords", throttle)
    try:
        summary = tap_once(kit, checkout_binding(stream))
    finally:
        kinesis.meta.events.unregister("before-call.kinesis.GetRecords", throttle)
    shard = summary.shards["shardId-000000000000"]
    assert shard.throttled == 3 and shard.accepted == 10


def test_two_workers_share_a_stream_and_release_their_leases(kit: Kit) -> None:
    stream = create_stream(kit, shards=4)
    producer = Producer(BotoKinesis(kit.clients.kinesis()), kit.clock)
    report = producer.run(stream, ProduceSpec(count=200, entities=40, seed=11))
    stop = threading.Event()
    options = TapOptions(reader=FAST.reader, discover_interval_s=0.2)
    workers = [kit.tap_worker(checkout_binding(stream), options=options) for _ in range(2)]
    threads = [
        threading.Thread(target=w.run, kwargs={"once": False, "stop": stop}) for w in workers
    ]
    for t in threads:  # the second starts late: the first takes every shard, then gives two up
        t.start()
        threading.Event().wait(0.5)

    def owners() -> Counter[str]:
        items = kit.clients.dynamodb().scan(TableName=kit.names.leases_table)["Items"]
        return Counter(i["lease_owner"]["S"] for i in items if "lease_owner" in i)

    try:
        for _ in range(300):
            accepted = sum(w.summary.totals()["accepted"] for w in workers)
            if accepted >= report.expected["accepted"] and sorted(owners().values()) == [2, 2]:
                break
            threading.Event().wait(0.05)
        balanced = owners()
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert sorted(balanced.values()) == [2, 2]  # a fair share each
    accepted = sum(w.summary.totals()["accepted"] for w in workers)
    assert accepted == report.expected["accepted"]  # re-reads after a take-over: redeliveries
    assert sum(w.summary.totals()["duplicates"] for w in workers) == 0
    leases = kit.clients.dynamodb().scan(TableName=kit.names.leases_table)["Items"]
    mine = [item for item in leases if item["stream"]["S"] == stream]
    assert len(mine) == 4 and all("lease_owner" not in item for item in mine)
    assert all(int(item["lease_expires_ms"]["N"]) == 0 for item in mine)


def test_start_taps_runs_every_binding_until_stopped(kit: Kit) -> None:
    """What `pik up` uses: one background tap per [[tap]] binding; stop() flushes and releases."""

    streams = [create_stream(kit, shards=1) for _ in range(2)]
    producer = Producer(BotoKinesis(kit.clients.kinesis()), kit.clock)
    for n, stream in enumerate(streams):
        producer.run(stream, ProduceSpec(count=30, seed=n))
    handle = kit.start_taps([checkout_binding(s) for s in streams], options=FAST)
    try:
        for _ in range(200):
            if all(w.summary.totals()["accepted"] == 30 for w in handle.workers):
                break
            threading.Event().wait(0.05)
    finally:
        summaries = handle.stop()
    assert [s.totals()["accepted"] for s in summaries] == [30, 30]
    assert set(handle.states().values()) == {"stopped"}
    threads = [c.thread for c in handle.supervisor.components.values()]
    assert threads and not any(t is not None and t.is_alive() for t in threads)


def dead_workers_leases(kit: Kit, stream: str, expires_ms: int) -> None:
    """The lease rows a worker that died holding every shard leaves behind."""
    for shard in BotoKinesis(kit.clients.kinesis()).list_shards(stream):
        kit.clients.dynamodb().put_item(
            TableName=kit.names.leases_table,
            Item={
                "lease_key": {"S": f"{stream}#{shard.shard_id}"},
                "stream": {"S": stream},
                "shard_id": {"S": shard.shard_id},
                "lease_owner": {"S": "pik-dead"},
                "lease_expires_ms": {"N": str(expires_ms)},
            },
        )


def test_once_waits_for_a_dead_workers_leases_then_drains(settings: Any) -> None:
    from infra.clock import SystemClock
    from pik.kit import build_kit
    from pik.taps import tap_options

    kit = build_kit(settings, clock=SystemClock())  # leases expire in real time
    kit.bootstrap().run(demo_stream=False)
    stream = create_stream(kit, shards=2)
    Producer(BotoKinesis(kit.clients.kinesis()), kit.clock).run(
        stream, ProduceSpec(count=40, seed=5)
    )
    now_ms = int(kit.clock.now().timestamp() * 1000)
    dead_workers_leases(kit, stream, now_ms + 1_500)

    summary = kit.tap_worker(checkout_binding(stream), options=tap_options(lease_ms=2_000))
    drained = summary.run(once=True).to_json()

    assert drained["accepted"] == 40
    assert drained["held_elsewhere"] == []


def test_once_fails_naming_the_shards_a_live_worker_keeps(settings: Any) -> None:
    from consumers.tap.worker import ShardsUnread
    from infra.clock import SystemClock
    from pik.kit import build_kit
    from pik.taps import tap_options

    kit = build_kit(settings, clock=SystemClock())
    kit.bootstrap().run(demo_stream=False)
    stream = create_stream(kit, shards=2)
    Producer(BotoKinesis(kit.clients.kinesis()), kit.clock).run(
        stream, ProduceSpec(count=10, seed=6)
    )
    stop = threading.Event()

    def live_worker() -> None:
        # Renews its leases until stopped, 5 s ahead: on a loaded machine a renewal can take
        # longer than the tap's 1 s lease, and a lapsed lease would be taken over.
        while not stop.is_set():
            dead_workers_leases(kit, stream, int(kit.clock.now().timestamp() * 1000) + 5_000)
            stop.wait(0.2)

    # The leases exist before the tap starts: the renewer's first write may come late.
    dead_workers_leases(kit, stream, int(kit.clock.now().timestamp() * 1000) + 5_000)
    renewer = threading.Thread(target=live_worker)
    renewer.start()
    try:
        worker = kit.tap_worker(checkout_binding(stream), options=tap_options(lease_ms=1_000))
        with pytest.raises(ShardsUnread) as unread:
            worker.run(once=True)
    finally:
        stop.set()
        renewer.join()
    assert sorted(unread.value.shards) == ["shardId-000000000000", "shardId-000000000001"]
    assert "shardId-000000000000" in str(unread.value)
    assert unread.value.summary.totals()["records"] == 0
