"""consumers/tap/{shard,worker}.py on an in-memory stream, lease store and sink: checkpoints,
--once, redelivery after a crash, throttling, expired iterators, resharding and shared leases."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

import pytest

from consumers.ingest import IngestResult, IngestSink, Submission
from consumers.tap.binding import binding_from_table
from consumers.tap.decode import RecordDecoder
from consumers.tap.shard import ReaderOptions
from consumers.tap.worker import ShardsUnread, TapOptions, TapWorker
from infra.errors import BackendError
from infra.kinesis import MemoryStream, Page, StartAt
from infra.leases import MemoryLeaseStore
from schemas.envelope import Status
from schemas.kpl import aggregate
from tests.unit.support import MemoryKit

BINDING = binding_from_table(
    {"stream": "clicks", "source": "web", "event_type": "$.kind", "idempotency_key": "$.id"}
)
FAST = ReaderOptions(min_call_interval_s=0, idle_wait_s=0.01, backoff_base_s=0.001, limit=7)


def click(n: int, kind: str = "click") -> bytes:
    return json.dumps({"id": f"c-{n}", "kind": kind, "page": f"/p/{n % 3}"}).encode()


def worker(
    stream: MemoryStream,
    leases: MemoryLeaseStore,
    kit: MemoryKit,
    sink: IngestSink | None = None,
    **options: object,
) -> TapWorker:
    opts = TapOptions(**{"reader": FAST, "discover_interval_s": 0.05, **options})  # type: ignore[arg-type]
    return TapWorker(
        "clicks",
        port=stream,
        leases=leases,
        sink=sink or kit.sink,
        decoder=RecordDecoder(BINDING),
        clock=kit.clock,
        metrics=kit.metrics,
        options=opts,
    )


def test_once_drains_checkpoints_and_a_second_run_adds_nothing() -> None:
    stream, leases, kit = MemoryStream("clicks", shards=2), MemoryLeaseStore(), MemoryKit()
    for n in range(40):
        stream.put(click(n), f"user_{n % 5}")
    stream.put(click(3), "user_3")  # a producer retry
    stream.put(b"\x00garbage", "user_x")
    summary = worker(stream, leases, kit).run(once=True).to_json()
    assert (summary["records"], summary["accepted"], summary["duplicates"]) == (42, 40, 1)
    assert (summary["rejected"], summary["redeliveries"]) == (1, 0)
    assert summary["reasons"] == {"invalid_json": 1}
    assert all(lease.checkpoint and lease.owner is None for lease in leases.leases.values())
    files = dict(kit.archive.files)
    again = worker(stream, leases, kit).run(once=True).to_json()
    assert again["records"] == 0
    assert kit.archive.files == files


def test_a_crash_before_the_checkpoint_is_absorbed_as_redelivery() -> None:
    stream, leases, kit = MemoryStream("clicks"), MemoryLeaseStore(), MemoryKit()
    for n in range(20):
        stream.put(click(n), "k")
    first = worker(stream, leases, kit).run(once=True)
    assert first.totals()["accepted"] == 20
    for lease in leases.leases.values():  # as if the checkpoints had never been written
        leases.leases[lease.key] = type(lease)(lease.stream, lease.shard_id)
    files = dict(kit.archive.files)
    again = worker(stream, leases, kit).run(once=True).totals()
    assert (again["redeliveries"], again["accepted"], again["duplicates"]) == (20, 0, 0)
    assert kit.archive.files == files  # same cuts, same names: nothing new written


def test_kpl_aggregates_and_corrupt_ones() -> None:
    stream, leases, kit = MemoryStream("clicks"), MemoryLeaseStore(), MemoryKit()
    (agg,) = aggregate([(f"user_{n}", click(n)) for n in range(25)])
    stream.put(agg.data, agg.partition_key)
    stream.put(agg.data[:-3], agg.partition_key)  # truncated
    totals = worker(stream, leases, kit).run(once=True).totals()
    assert (totals["records"], totals["user_records"]) == (2, 26)
    assert (totals["accepted"], totals["rejected"]) == (25, 1)
    assert totals["reasons"] == {"undecodable": 1}


def test_throttling_backs_off_and_expired_iterators_resume_from_the_checkpoint() -> None:
    stream, leases, kit = MemoryStream("clicks"), MemoryLeaseStore(), MemoryKit()
    for n in range(30):
        stream.put(click(n), "k")
    stream.throttle_next = 3
    w = worker(stream, leases, kit)
    real = stream.get_records
    calls = {"n": 0}

    def expiring(stream_name: str, shard_id: str, iterator: str, limit: int) -> Page:
        calls["n"] += 1
        if calls["n"] == 6:
            stream.expire([iterator])
        return real(stream_name, shard_id, iterator, limit)

    stream.get_records = expiring  # type: ignore[method-assign,assignment]
    summary = w.run(once=True)
    shard = summary.shards["shardId-000000000000"]
    assert shard.throttled == 3 and shard.expired_iterators == 1
    assert shard.accepted == 30 and shard.redeliveries == 0


def test_a_failed_ingest_is_retried_never_skipped() -> None:
    stream, leases, kit = MemoryStream("clicks"), MemoryLeaseStore(), MemoryKit()
    for n in range(10):
        stream.put(click(n), "k")
    failures = {"left": 2}

    class Flaky(IngestSink):
        def ingest(
            self, batch: Sequence[Submission], *, label: str, at: datetime | None = None
        ) -> list[IngestResult]:
            if failures["left"]:
                failures["left"] -= 1
                raise BackendError("S3 put: SlowDown", service="s3")
            return super().ingest(batch, label=label, at=at)

    sink = Flaky(kit.archive, kit.index, kit.clock, kit.metrics)
    w = worker(stream, leases, kit, sink=sink)
    import consumers.tap.shard as shard_module

    original = shard_module.full_jitter
    shard_module.full_jitter = lambda *a: 0.0
    try:
        summary = w.run(once=True).totals()
    finally:
        shard_module.full_jitter = original
    assert summary["accepted"] == 10


def test_parents_are_read_to_their_end_before_children() -> None:
    stream, leases, kit = MemoryStream("clicks"), MemoryLeaseStore(), MemoryKit()
    for n in range(10):
        stream.put(click(n), "user_1")
    left, right = stream.split("shardId-000000000000")
    for n in range(10, 20):
        stream.put(click(n), "user_1", shard_id=left)
    merged = stream.merge(left, right)
    for n in range(20, 30):
        stream.put(click(n), "user_1", shard_id=merged)
    order: list[str] = []
    real = stream.get_records

    def spy(s: str, shard_id: str, it: str, limit: int) -> Page:
        page = real(s, shard_id, it, limit)
        order.extend(json.loads(r.data)["id"] for r in page.records)
        return page

    stream.get_records = spy  # type: ignore[method-assign,assignment]
    summary = worker(stream, leases, kit, start=StartAt.parse("latest")).run(once=True)
    # --from latest skips what the root shard held; its children are read from TRIM_HORIZON,
    # each only after its parents were read to their end.
    assert order == [f"c-{n}" for n in range(10, 30)]
    assert summary.totals()["accepted"] == 20
    assert all(leases.leases[f"clicks#{s}"].finished for s in ("shardId-000000000000", left, right))


def test_a_live_workers_shards_are_left_alone_until_released() -> None:
    stream, leases, kit = MemoryStream("clicks", shards=4), MemoryLeaseStore(), MemoryKit()
    for n in range(40):
        stream.put(click(n), f"user_{n}")
    stop = threading.Event()
    a = worker(stream, leases, kit)
    thread = threading.Thread(target=a.run, kwargs={"once": False, "stop": stop})
    thread.start()
    try:
        for _ in range(500):
            if sum(s.accepted for s in list(a.summary.shards.values())) == 40:
                break
            threading.Event().wait(0.01)
        short = ReaderOptions(min_call_interval_s=0.0, idle_wait_s=0.01, lease_ms=200)
        with pytest.raises(ShardsUnread) as unread:
            worker(stream, leases, kit, reader=short).run(once=True)
        assert len(unread.value.shards) == 4  # a's leases stay live: --once must not pass
        assert not unread.value.summary.shards
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert all(lease.owner is None for lease in leases.leases.values())  # released on stop
    c = worker(stream, leases, kit).run(once=True)
    assert len(c.shards) == 4 and c.totals()["records"] == 0  # from the checkpoints
    index = Counter(
        item["status"] for (_, kind), item in kit.index.items.items() if kind == "event"
    )
    assert index == {"ACCEPTED": 40}


def test_a_dead_workers_leases_are_taken_over_once_expired() -> None:
    stream, leases, kit = MemoryStream("clicks", shards=2), MemoryLeaseStore(), MemoryKit()
    for n in range(10):
        stream.put(click(n), f"user_{n}")
    now_ms = int(kit.clock.now().timestamp() * 1000)
    for shard_id in stream.open_shards():  # a worker that died holding both shards
        assert leases.acquire("clicks", shard_id, "dead-worker", now_ms, 30_000)
    short = ReaderOptions(min_call_interval_s=0.0, idle_wait_s=0.01, lease_ms=200)
    with pytest.raises(ShardsUnread) as early:  # the clock stands still: never expired
        worker(stream, leases, kit, reader=short).run(once=True)
    assert sorted(early.value.shards) == sorted(stream.open_shards())
    kit.clock.advance(seconds=31)
    late = worker(stream, leases, kit).run(once=True)
    assert len(late.shards) == 2 and late.totals()["accepted"] == 10


def test_a_fair_share_leaves_shards_for_other_live_workers() -> None:
    stream, leases, kit = MemoryStream("clicks", shards=4), MemoryLeaseStore(), MemoryKit()
    now_ms = int(kit.clock.now().timestamp() * 1000)
    assert leases.acquire("clicks", "shardId-000000000003", "other", now_ms, 30_000)
    w = worker(stream, leases, kit)
    shards = stream.list_shards("clicks")
    share = w._share(shards, leases.get_many("clicks", [s.shard_id for s in shards]), set(), now_ms)
    assert share == 2  # four shards, two live workers


@pytest.mark.parametrize("text", ["trim_horizon", "LATEST", "2025-12-29T00:00:00Z"])
def test_start_positions_parse(text: str) -> None:
    assert StartAt.parse(text).kind.value in {"TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"}


def test_bad_start_position() -> None:
    with pytest.raises(Exception, match="expected trim_horizon"):
        StartAt.parse("yesterday")


def test_status_counts_match_the_index() -> None:
    stream, leases, kit = MemoryStream("clicks"), MemoryLeaseStore(), MemoryKit()
    for n in range(5):
        stream.put(click(n), "k")
    worker(stream, leases, kit).run(once=True)
    identities = [item for (_, kind), item in kit.index.items.items() if kind == "event"]
    assert len(identities) == 5
    assert {item["status"] for item in identities} == {Status.ACCEPTED.value}


def test_pages_are_ingested_in_bounded_groups_of_whole_records() -> None:
    stream, leases, kit = MemoryStream("clicks"), MemoryLeaseStore(), MemoryKit()
    for a in range(3):
        (agg,) = aggregate([(f"user_{n}", click(a * 10 + n)) for n in range(10)])
        stream.put(agg.data, agg.partition_key)
    batches: list[int] = []

    class Counting(IngestSink):
        def ingest(
            self, batch: Sequence[Submission], *, label: str, at: datetime | None = None
        ) -> list[IngestResult]:
            batches.append(len(batch))
            return super().ingest(batch, label=label, at=at)

    sink = Counting(kit.archive, kit.index, kit.clock, kit.metrics)
    reader = ReaderOptions(min_call_interval_s=0, max_batch_records=15)
    w = TapWorker(
        "clicks",
        port=stream,
        leases=leases,
        sink=sink,
        decoder=RecordDecoder(BINDING),
        clock=kit.clock,
        metrics=kit.metrics,
        options=TapOptions(reader=reader),
    )
    assert w.run(once=True).totals()["accepted"] == 30
    assert batches == [10, 10, 10]  # an aggregate is never split across checkpoints


def test_a_late_worker_takes_over_its_share_from_a_busy_one() -> None:
    stream, leases, kit = MemoryStream("clicks", shards=4), MemoryLeaseStore(), MemoryKit()
    now_ms = int(kit.clock.now().timestamp() * 1000)
    for shard_id in stream.open_shards():  # a live worker holding everything
        assert leases.acquire("clicks", shard_id, "busy", now_ms, 30_000)
    stop = threading.Event()
    late = worker(stream, leases, kit)
    thread = threading.Thread(target=late.run, kwargs={"once": False, "stop": stop})
    thread.start()
    try:
        for _ in range(300):
            owners = Counter(lease.owner for lease in leases.leases.values())
            if owners[late.worker_id] == 2:
                break
            threading.Event().wait(0.01)
        threading.Event().wait(0.2)  # and no more than its share
        owners = Counter(lease.owner for lease in leases.leases.values())
    finally:
        stop.set()
        thread.join(10)
    assert owners == {"busy": 2, late.worker_id: 2}
