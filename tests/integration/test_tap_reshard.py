"""Resharding while records flow, on a faithful Kinesis (npm kinesis-local, installed by the
suite: tests/emulators.py). moto is not used for the stream here because after a split it keeps
writing to the closed parent, never ends it and returns no ChildShards. The archive, index and
leases stay on the suite's embedded moto server.

A split and then a merge happen while a producer writes and a running tap reads; the tap picks
up the new shards, reads every parent to its end before its children, and so every partition
key's records are read in the order they were written, each archived exactly once."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from consumers.tap.binding import binding_from_table
from consumers.tap.decode import RecordDecoder
from consumers.tap.shard import ReaderOptions
from consumers.tap.worker import TapOptions, TapWorker
from infra.kinesis import Page
from infra.kinesis_boto import BotoKinesis
from infra.leases_dynamo import DynamoLeaseStore
from pik.kit import Kit
from tests.emulators import kinesis_local

STREAM = "orders"
KEYS = [f"k{n}" for n in range(20)]


@pytest.fixture(scope="module")
def kinesis() -> Iterator[Any]:
    with kinesis_local() as endpoint:
        yield boto3.client(
            "kinesis",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


def wait_active(kinesis: Any) -> None:
    for _ in range(200):
        summary = kinesis.describe_stream_summary(StreamName=STREAM)
        if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.05)
    raise TimeoutError("stream not ACTIVE")


class Spy(BotoKinesis):
    """Records the order in which the tap read each key's records."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.order: dict[str, list[int]] = defaultdict(list)
        self.lock = threading.Lock()

    def get_records(self, stream: str, shard_id: str, iterator: str, limit: int) -> Page:
        page = super().get_records(stream, shard_id, iterator, limit)
        with self.lock:
            for r in page.records:
                doc = json.loads(r.data)
                self.order[doc["key"]].append(doc["n"])
        return page


def test_split_and_merge_while_records_flow(kit: Kit, kinesis: Any) -> None:
    kinesis.create_stream(StreamName=STREAM, ShardCount=1)
    wait_active(kinesis)
    written: dict[str, int] = defaultdict(int)

    def put_round(count: int) -> None:
        entries: list[dict[str, Any]] = []
        for _ in range(count):
            key = KEYS[len(entries) % len(KEYS)]
            body = {"key": key, "n": written[key], "id": f"{key}-{written[key]}"}
            written[key] += 1
            entries.append({"PartitionKey": key, "Data": json.dumps(body).encode()})
        out = kinesis.put_records(StreamName=STREAM, Records=entries)
        assert out["FailedRecordCount"] == 0

    spy = Spy(kinesis)
    binding = binding_from_table(
        {"stream": STREAM, "source": "orders", "event_type": "order", "idempotency_key": "$.id"}
    )
    options = TapOptions(
        reader=ReaderOptions(min_call_interval_s=0.05, idle_wait_s=0.05, limit=100),
        discover_interval_s=0.2,
    )
    worker = TapWorker(
        STREAM,
        port=spy,
        leases=DynamoLeaseStore(kit.clients.dynamodb(), kit.names.leases_table),
        sink=kit.sink,
        decoder=RecordDecoder(binding),
        clock=kit.clock,
        metrics=kit.metrics,
        options=options,
    )
    stop = threading.Event()
    tap = threading.Thread(target=worker.run, kwargs={"once": False, "stop": stop})
    tap.start()
    try:
        put_round(200)
        time.sleep(0.3)
        kinesis.split_shard(
            StreamName=STREAM, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**127)
        )
        put_round(100)  # some of these may still land in the parent while it is UPDATING
        wait_active(kinesis)
        put_round(200)
        time.sleep(0.3)
        kinesis.merge_shards(
            StreamName=STREAM,
            ShardToMerge="shardId-000000000001",
            AdjacentShardToMerge="shardId-000000000002",
        )
        put_round(100)
        wait_active(kinesis)
        put_round(200)
        total = sum(written.values())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and worker.summary.totals()["user_records"] < total:
            time.sleep(0.1)
    finally:
        stop.set()
        tap.join(30)
    assert not tap.is_alive()

    totals = worker.summary.totals()
    assert totals["user_records"] == total == 800
    assert (totals["accepted"], totals["duplicates"], totals["rejected"]) == (800, 0, 0)
    for key in KEYS:  # per-key order held across the split and the merge
        assert spy.order[key] == list(range(written[key])), key
    shards = worker.summary.shards
    assert set(shards) == {f"shardId-00000000000{n}" for n in range(4)}
    assert all(shards[f"shardId-00000000000{n}"].finished for n in range(3))  # parents ended
    assert not shards["shardId-000000000003"].finished
