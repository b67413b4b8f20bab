"""consumers/tap/fanout.py on the in-memory stream: the stream consumer, subscriptions that end
and are renewed from the continuation, busy shards, resharding, stopping and failing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from consumers.tap.binding import binding_from_table
from consumers.tap.decode import RecordDecoder
from consumers.tap.fanout import FanOut, ensure_consumer
from consumers.tap.shard import ReaderOptions
from consumers.tap.worker import TapOptions, TapWorker
from infra.errors import BackendError, ConfigError
from infra.kinesis import ConsumerStatus, MemoryStream, Page, StartAt, StartKind, Subscription
from infra.leases import MemoryLeaseStore
from tests.unit.support import MemoryKit

BINDING = binding_from_table(
    {"stream": "clicks", "source": "web", "event_type": "$.kind", "idempotency_key": "$.id"}
)
FAST = ReaderOptions(
    min_call_interval_s=0, min_subscribe_interval_s=0, idle_wait_s=0.01, backoff_base_s=0.001
)
EFO = FanOut("pik-tap", poll_s=0.001)


def click(n: int) -> bytes:
    return json.dumps({"id": f"c-{n}", "kind": "click"}).encode()


def worker(
    stream: MemoryStream, leases: MemoryLeaseStore, kit: MemoryKit, **options: object
) -> TapWorker:
    opts = TapOptions(reader=FAST, discover_interval_s=0.02, fan_out=EFO, **options)  # type: ignore[arg-type]
    return TapWorker(
        "clicks",
        port=stream,
        leases=leases,
        sink=kit.sink,
        decoder=RecordDecoder(BINDING),
        clock=kit.clock,
        metrics=kit.metrics,
        options=opts,
    )


def test_a_consumer_is_registered_waited_for_and_reused() -> None:
    stream = MemoryStream("clicks")
    stream.activation_polls = 3
    first = ensure_consumer(stream, "clicks", EFO, threading.Event())
    assert first is not None
    assert first.status is ConsumerStatus.ACTIVE and first.name == "pik-tap"
    again = ensure_consumer(stream, "clicks", EFO, threading.Event())
    assert again == first and len(stream.consumers) == 1


def test_a_consumer_that_never_becomes_active_fails_with_its_status() -> None:
    stream = MemoryStream("clicks")
    stream.activation_polls = 10**6
    with pytest.raises(BackendError, match="still CREATING"):
        ensure_consumer(
            stream, "clicks", FanOut(active_timeout_s=0.02, poll_s=0.001), threading.Event()
        )


def test_stopping_while_the_consumer_is_created_reads_nothing() -> None:
    stream, leases, kit = MemoryStream("clicks"), MemoryLeaseStore(), MemoryKit()
    stream.activation_polls = 10**6
    stream.put(click(1), "k")
    stop = threading.Event()
    stop.set()
    summary = worker(stream, leases, kit).run(once=False, stop=stop)
    assert not summary.shards and summary.efo_consumer is None and not leases.leases


def test_a_dry_run_registers_no_consumer() -> None:
    stream, leases, kit = MemoryStream("clicks"), MemoryLeaseStore(), MemoryKit(dry_run=True)
    with pytest.raises(ConfigError, match="dry run registers nothing"):
        worker(stream, leases, kit).run(once=True)
    assert not stream.consumers


def test_once_reads_every_shard_through_subscriptions_and_resumes_from_checkpoints() -> None:
    stream, leases, kit = MemoryStream("clicks", shards=2), MemoryLeaseStore(), MemoryKit()
    stream.events_per_subscription, stream.event_limit = 2, 3  # many short subscriptions
    for n in range(40):
        stream.put(click(n), f"user_{n % 7}")
    stream.put(click(3), "user_3")  # a producer retry
    stream.put(b"\x00garbage", "user_x")

    summary = worker(stream, leases, kit).run(once=True)

    totals = summary.totals()
    assert (totals["records"], totals["accepted"], totals["duplicates"]) == (42, 40, 1)
    assert (totals["rejected"], totals["redeliveries"]) == (1, 0)
    assert summary.efo_consumer == stream.consumers["pik-tap"].arn
    shards = summary.shards.values()
    assert all(s.get_records_calls == 0 and s.subscriptions > 2 for s in shards)
    for shard_id in ("shardId-000000000000", "shardId-000000000001"):
        kinds = [start.kind for s, start in stream.subscriptions if s == shard_id]
        # the first from --from, each one after it after the last event's continuation
        assert kinds[0] is StartKind.TRIM_HORIZON
        assert set(kinds[1:]) == {StartKind.AFTER_SEQUENCE_NUMBER}
    assert all(lease.checkpoint and lease.owner is None for lease in leases.leases.values())

    stream.subscriptions.clear()
    again = worker(stream, leases, kit).run(once=True)
    assert again.totals()["records"] == 0
    assert sorted(stream.subscriptions) == sorted(
        (lease.shard_id, StartAt.after(lease.checkpoint or "")) for lease in leases.leases.values()
    )


def test_a_busy_shard_is_retried_with_backoff() -> None:
    stream, leases, kit = MemoryStream("clicks"), MemoryLeaseStore(), MemoryKit()
    for n in range(10):
        stream.put(click(n), "k")
    stream.busy_next = 3  # e.g. the previous owner's subscription, not yet gone
    shard = worker(stream, leases, kit).run(once=True).shards["shardId-000000000000"]
    assert shard.subscription_retries == 3 and shard.accepted == 10


def test_a_subscription_that_breaks_off_is_taken_up_after_its_last_event() -> None:
    stream, leases, kit = MemoryStream("clicks"), MemoryLeaseStore(), MemoryKit()
    stream.events_per_subscription, stream.event_limit = 10**6, 4
    for n in range(12):
        stream.put(click(n), "k")
    stream.break_next = 2  # a connection reset, twice, each after one event
    shard = worker(stream, leases, kit).run(once=True).shards["shardId-000000000000"]
    assert (shard.accepted, shard.redeliveries) == (12, 0)  # nothing read twice
    assert shard.subscription_retries == 2 and shard.subscriptions == 3
    first, second, third = (start for _, start in stream.subscriptions)
    assert first.kind is StartKind.TRIM_HORIZON
    assert (second.sequence_number, third.sequence_number) == ("104", "108")


def test_parents_end_on_child_shards_and_are_read_before_children() -> None:
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
    real = stream.subscribe

    def spy(s: str, arn: str, shard_id: str, start: StartAt) -> Subscription:
        subscription = real(s, arn, shard_id, start)

        class Spy:
            def __iter__(self) -> Iterator[Page]:
                for page in subscription:
                    order.extend(json.loads(r.data)["id"] for r in page.records)
                    yield page

            def close(self) -> None:
                subscription.close()

        return Spy()

    stream.subscribe = spy  # type: ignore[method-assign,assignment]
    summary = worker(stream, leases, kit).run(once=True)
    assert order == [f"c-{n}" for n in range(30)]
    assert all(leases.leases[f"clicks#{s}"].finished for s in ("shardId-000000000000", left, right))
    assert summary.totals()["accepted"] == 30


def test_stop_closes_a_subscription_waiting_for_its_next_event() -> None:
    stream, leases, kit = MemoryStream("clicks"), MemoryLeaseStore(), MemoryKit()
    stream.events_per_subscription, stream.idle_event_s = 10**6, 30.0  # a quiet shard
    for n in range(5):
        stream.put(click(n), "k")
    w = worker(stream, leases, kit)
    stop = threading.Event()
    thread = threading.Thread(target=w.run, kwargs={"once": False, "stop": stop})
    thread.start()
    for _ in range(500):
        if w.summary.totals()["accepted"] == 5:
            break
        time.sleep(0.01)
    started = time.monotonic()
    stop.set()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - started < 2
    lease = leases.leases["clicks#shardId-000000000000"]
    assert lease.owner is None and lease.checkpoint is not None  # released, checkpointed


def test_an_endpoint_without_subscribe_to_shard_fails_the_tap() -> None:
    stream, leases, kit = MemoryStream("clicks"), MemoryLeaseStore(), MemoryKit()
    stream.put(click(1), "k")

    def unsupported(*_: object) -> Subscription:
        raise BackendError("Kinesis SubscribeToShard on clicks/shardId-000000000000 failed")

    stream.subscribe = unsupported  # type: ignore[method-assign,assignment]
    with pytest.raises(BackendError, match="SubscribeToShard"):
        worker(stream, leases, kit).run(once=True)
