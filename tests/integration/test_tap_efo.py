"""The tap with enhanced fan-out (``pik tap --efo``) on a faithful Kinesis: npm kinesis-local
0.6.2 (installed by the suite: tests/emulators.py), since moto has no SubscribeToShard. The
archive, index and leases stay on the suite's embedded moto server.

kinesis-local omits the ``initial-response`` event that starts every SubscribeToShard stream on
AWS, which botocore requires; ``tests/efo_adapter.py`` is a test-only adapter for this
emulator's gap (a botocore hook that inserts the event), registered here on the kit's Kinesis
client only. Resharding is not tested over fan-out here: on kinesis-local a subscription to a
closed parent never sends ``ChildShards`` and never ends (shared/EMULATORS.md); the reader's
handling of ``ChildShards`` is covered on the in-memory stream (tests/unit/test_tap_fanout.py).
"""

from __future__ import annotations

import time
import tomllib
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from consumers.tap.binding import TapBinding
from consumers.tap.fanout import DEFAULT_CONSUMER_NAME, FanOut
from consumers.tap.shard import ReaderOptions
from consumers.tap.summary import TapSummary
from consumers.tap.worker import TapOptions
from infra.aws import AwsClients
from infra.clock import FixedClock
from infra.kinesis import StartAt, StartKind
from infra.kinesis_boto import BotoKinesis
from pik.config import parse_config
from pik.kit import Kit, build_kit
from pik.settings import Settings
from producers.produce import BINDING_TOML, Produced, Producer, ProduceSpec
from schemas.codec import ArchiveRecord, decode_archive
from tests.efo_adapter import insert_initial_response
from tests.emulators import kinesis_local

OPTIONS = TapOptions(
    reader=ReaderOptions(min_subscribe_interval_s=0.2, backoff_max_s=1.0),
    discover_interval_s=0.2,
)


@pytest.fixture(scope="module")
def kinesis_endpoint() -> Iterator[str]:
    with kinesis_local() as endpoint:
        yield endpoint


@pytest.fixture
def efo_kit(settings: Settings, clock: FixedClock, kinesis_endpoint: str) -> Kit:
    """The kit on moto, except Kinesis: kinesis-local, with the test-only adapter."""

    def adapt(service: str, client: Any) -> None:
        if service == "kinesis":
            insert_initial_response(client)

    clients = AwsClients(
        settings.aws(), on_client=adapt, environ={"AWS_ENDPOINT_URL_KINESIS": kinesis_endpoint}
    )
    kit = build_kit(settings, clock=clock, clients=clients)
    kit.bootstrap().run(demo_stream=False)
    return kit


def create_stream(kit: Kit, shards: int) -> str:
    name = f"orders-{uuid.uuid4().hex[:8]}"
    kinesis = kit.clients.kinesis()
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2})
    return name


def binding(stream: str) -> TapBinding:
    return parse_config(tomllib.loads(BINDING_TOML.format(stream=stream))).taps[0]


def tap_once(kit: Kit, stream: str, start: StartAt | None = None) -> TapSummary:
    fan_out = FanOut(poll_s=0.1)  # the default consumer name
    worker = kit.tap_worker(binding(stream), start=start, options=OPTIONS, fan_out=fan_out)
    return worker.run(once=True)


def archived(kit: Kit) -> list[ArchiveRecord]:
    s3 = kit.clients.s3()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=kit.names.bucket)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return [r for key in keys for r in decode_archive(kit.archive.get_file(key))]


def test_plain_and_kpl_records_are_archived_exactly_once_over_fan_out(efo_kit: Kit) -> None:
    kit = efo_kit
    stream = create_stream(kit, shards=2)
    producer = Producer(BotoKinesis(kit.clients.kinesis()), kit.clock)
    plain: list[Produced] = []
    spec = ProduceSpec(count=200, entities=20, duplicates=0.05, bad=0.05, seed=21)
    report = producer.run(stream, spec, keep=plain)
    kpl: list[Produced] = []
    kpl_report = producer.run(stream, ProduceSpec(count=150, kpl=True, seed=22), keep=kpl)

    first = tap_once(kit, stream)

    totals = first.totals()
    assert totals["user_records"] == 350
    assert totals["accepted"] == report.expected["accepted"] + kpl_report.expected["accepted"]
    assert totals["duplicates"] == report.expected["duplicate"]
    assert totals["rejected"] == report.expected["rejected"]
    assert totals["redeliveries"] == 0
    assert set(first.shards) == {"shardId-000000000000", "shardId-000000000001"}
    assert all(s.subscriptions >= 1 and s.get_records_calls == 0 for s in first.shards.values())
    consumer = kit.clients.kinesis().describe_stream_consumer(
        StreamARN=BotoKinesis(kit.clients.kinesis()).stream_arn(stream),
        ConsumerName=DEFAULT_CONSUMER_NAME,
    )["ConsumerDescription"]
    assert consumer["ConsumerStatus"] == "ACTIVE"
    assert first.efo_consumer == consumer["ConsumerARN"]
    records = archived(kit)
    assert len({r.provenance.occurrence_id for r in records}) == len(records) == 350
    assert Counter(r.raw for r in records) == Counter(p.body for p in plain + kpl)

    again = tap_once(kit, stream)  # the same consumer, from the checkpoints

    assert again.efo_consumer == first.efo_consumer
    assert again.totals()["records"] == 0
    assert len(archived(kit)) == 350


def test_at_timestamp_starts_a_subscription_at_that_arrival_time(efo_kit: Kit) -> None:
    kit = efo_kit
    stream = create_stream(kit, shards=1)
    producer = Producer(BotoKinesis(kit.clients.kinesis()), kit.clock)
    producer.run(stream, ProduceSpec(count=5, seed=1))
    time.sleep(0.05)
    since = datetime.now(UTC)
    time.sleep(0.05)
    producer.run(stream, ProduceSpec(count=7, seed=2))

    summary = tap_once(kit, stream, start=StartAt(StartKind.AT_TIMESTAMP, timestamp=since))

    assert summary.totals()["user_records"] == 7
