"""consumers/group_commit.py: concurrent callers share sink batches and share their fate."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest

from consumers.group_commit import GroupCommitter
from consumers.ingest import IngestResult, IngestSink, Submission
from schemas.envelope import Status
from tests.unit.support import MemoryKit, event_body, submission

THREADS = 50


class SpySink:
    """Wraps a real sink, counting ingest calls and the batch sizes it was given."""

    def __init__(self, sink: IngestSink, fail: BaseException | None = None) -> None:
        self._sink = sink
        self.fail = fail
        self.batches: list[int] = []
        self._lock = threading.Lock()

    def ingest(
        self, batch: Sequence[Submission], *, label: str, at: datetime | None = None
    ) -> list[IngestResult]:
        with self._lock:
            self.batches.append(len(batch))
        if self.fail is not None:
            raise self.fail
        return self._sink.ingest(batch, label=label, at=at)


@pytest.fixture
def spy(memory_kit: MemoryKit) -> SpySink:
    return SpySink(memory_kit.sink)


@pytest.fixture
def committer(spy: SpySink) -> Iterator[GroupCommitter]:
    gc = GroupCommitter(spy, max_wait_s=0.05)  # type: ignore[arg-type]
    yield gc
    gc.close()


def run_together(count: int, call: Callable[[int], Any]) -> list[Any]:
    """Start ``count`` callers at the same instant; return what each got (or raised)."""
    barrier = threading.Barrier(count)

    def one(i: int) -> Any:
        barrier.wait()
        try:
            return call(i)
        except BaseException as exc:
            return exc

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def test_fifty_callers_with_the_same_event_get_one_accepted(
    committer: GroupCommitter, spy: SpySink, memory_kit: MemoryKit
) -> None:
    raw = event_body()
    results = run_together(
        THREADS, lambda i: committer.submit([submission(raw, f"req-{i}", str(i))])
    )
    flat = [r for rs in results for r in rs]
    assert len(flat) == THREADS
    assert sorted(r.status for r in flat).count(Status.ACCEPTED) == 1
    assert [r.status for r in flat].count(Status.DUPLICATE) == THREADS - 1
    assert len({r.event_id for r in flat}) == 1
    # each caller got its own record back
    assert sorted(r.occurrence_id for r in flat) == sorted(f"req-{i}" for i in range(THREADS))
    # they shared sink batches, so they shared archive files
    assert sum(spy.batches) == THREADS
    assert len(spy.batches) <= 10
    assert len(memory_kit.archive.files) == len(spy.batches)
    assert memory_kit.metrics.counter("IngestCount") == 1


def test_each_caller_gets_its_own_results_in_order(committer: GroupCommitter) -> None:
    bodies = [event_body(entity_id=f"user_{i}") for i in range(3)]

    def call(i: int) -> list[IngestResult]:
        return committer.submit(
            [submission(b, f"req-{i}-{n}", str(n)) for n, b in enumerate(bodies)]
        )

    for i, results in enumerate(run_together(10, call)):
        assert [r.occurrence_id for r in results] == [f"req-{i}-{n}" for n in range(3)]
    assert [r.status for r in call(99)] == [Status.DUPLICATE] * 3


def test_a_sink_failure_reaches_every_waiting_caller(
    committer: GroupCommitter, spy: SpySink
) -> None:
    boom = ConnectionError("archive unreachable")
    spy.fail = boom
    outcomes = run_together(20, lambda i: committer.submit([submission(event_body(), f"r{i}")]))
    assert all(outcome is boom for outcome in outcomes)


def test_committer_keeps_working_after_a_failed_batch(
    committer: GroupCommitter, spy: SpySink
) -> None:
    spy.fail = RuntimeError("once")
    with pytest.raises(RuntimeError, match="once"):
        committer.submit([submission(event_body(), "r1")])
    spy.fail = None
    (result,) = committer.submit([submission(event_body(), "r2")])
    assert result.status is Status.ACCEPTED


def test_large_submissions_are_cut_at_max_batch(memory_kit: MemoryKit) -> None:
    spy = SpySink(memory_kit.sink)
    gc = GroupCommitter(spy, max_batch=5, max_wait_s=0.05)  # type: ignore[arg-type]
    try:
        outcomes = run_together(
            6,
            lambda i: gc.submit(
                [submission(event_body(entity_id=f"u{i}-{n}"), f"r{i}-{n}") for n in range(3)]
            ),
        )
    finally:
        gc.close()
    assert all(len(o) == 3 for o in outcomes)
    # a batch closes once it holds max_batch records: never more than one caller past it
    assert all(size <= 5 + 3 - 1 for size in spy.batches)
    assert sum(spy.batches) == 18
