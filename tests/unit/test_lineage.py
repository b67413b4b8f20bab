"""The replay sent log and ``StoreLineage`` on in-memory adapters: a block per checkpoint, a
crash or an unwritable log never leaves a sent message out of the log without a resume sending
it again, and the lineage lists only the replays and aggregate versions that really hold the
event."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from infra.aggregates import AggregateVersion, MemoryAggregates
from infra.errors import BackendError
from infra.replay_jobs import JobStatus, MemoryReplayJobs
from infra.replay_log import MemoryReplayLog, SentEntry
from infra.targets import MemoryTarget
from pik.lineage import StoreLineage, could_select
from tests.unit.support import MemoryKit
from tests.unit.test_replay import DAY, Targets, at, ingest, make_service, replay


def logged_keys(log: MemoryReplayLog) -> list[str]:
    return [
        line.split('"key":"', 1)[1].split('"', 1)[0]
        for body in log.blocks.values()
        for line in body.decode().splitlines()
    ]


class FlakyLog(MemoryReplayLog):
    """Refuses the appends whose (1-based) numbers are in ``fail``."""

    def __init__(self, fail: set[int]) -> None:
        super().__init__()
        self.fail, self.calls = fail, 0

    def append(
        self, replay_id: str, sequence: int, runner: str, entries: Sequence[SentEntry]
    ) -> None:
        self.calls += 1
        if self.calls in self.fail:
            raise BackendError("S3 PutObject failed: injected")
        super().append(replay_id, sequence, runner, entries)


@pytest.fixture
def mk() -> MemoryKit:
    mk = MemoryKit()
    ingest(mk, [at(f"2025-12-28T10:{m:02d}:00Z") for m in range(35)], "b")
    return mk


def test_one_block_per_checkpoint_and_a_crash_loses_no_log_entry(mk: MemoryKit) -> None:
    log = MemoryReplayLog()
    targets = Targets(MemoryTarget(crash_after_batches=2))
    service = make_service(mk, targets, checkpoint_every=10, log=log)
    job = replay(service, entity_id="user_123").job
    assert (job.status, job.sent) == (JobStatus.FAILED, 20)
    assert sorted(k.rsplit("/", 1)[1][:10] for k in log.blocks) == ["0000000000", "0000000010"]

    targets.target = MemoryTarget()
    done = service.resume(job.replay_id)
    assert (done.status, done.sent) == (JobStatus.COMPLETED, 35)
    keys = logged_keys(log)
    assert len(keys) == len(set(keys)) == 35  # everything sent, each logged once
    assert "0000000030" in " ".join(log.blocks)  # the resume continues the numbering


def test_an_unwritable_log_fails_the_job_and_resume_sends_the_unlogged_again(
    mk: MemoryKit,
) -> None:
    log = FlakyLog(fail={2, 3})  # the second checkpoint's block, and its retry at finish
    targets = Targets()
    service = make_service(mk, targets, checkpoint_every=10, log=log)
    job = replay(service, entity_id="user_123").job
    assert job.status is JobStatus.FAILED
    assert "sent log not written" in (job.reason or "")
    assert job.sent == 10  # the job counts only what its log holds
    first_run = [m["event_id"] for m in targets.target.messages]  # type: ignore[attr-defined]
    assert len(first_run) == 20

    targets.target = again = MemoryTarget()
    done = service.resume(job.replay_id)
    assert (done.status, done.sent) == (JobStatus.COMPLETED, 35)
    keys = logged_keys(log)
    assert len(keys) == len(set(keys)) == 35
    resent = {m["event_id"] for m in again.messages}
    assert resent.isdisjoint(first_run[:10]) and set(first_run[10:]) <= resent


def version(n: int, inputs: list[str], metric: str = "count") -> AggregateVersion:
    return AggregateVersion(
        entity_id="user_123",
        day="2025-12-28",
        metric=metric,
        version=n,
        value=float(len(inputs)),
        input_hash=f"h{n}",
        input_count=len(inputs),
        sample_event_ids=inputs[:1],
        computed_at="2025-12-29T01:00:00.000000Z",
        definition={},
        input_event_ids=inputs,
    )


EVENT: dict[str, Any] = {
    "event_id": "e1",
    "entity_id": "user_123",
    "source": "demo",
    "event_type": "heartbeat",
    "event_time": "2025-12-28T10:00:00Z",
}


def test_aggregate_versions_holding_the_event_with_the_latest_marked() -> None:
    aggs = MemoryAggregates()
    for v in (version(1, ["e0", "e1"]), version(2, ["e0", "e1", "e2"]), version(3, ["e0"])):
        aggs.put(v)
    aggs.put(version(1, ["e9", "e1"], metric="sum"))
    rows = StoreLineage(MemoryReplayJobs(), MemoryReplayLog(), aggs).aggregate_versions(EVENT)
    assert rows is not None
    assert [(r["metric"], r["version"], r["is_latest"]) for r in rows] == [
        ("count", 1, False),
        ("count", 2, False),
        ("sum", 1, True),
    ]
    assert {r["latest_version"] for r in rows if r["metric"] == "count"} == {3}
    no_entity = {**EVENT, "entity_id": None}
    assert (
        StoreLineage(MemoryReplayJobs(), MemoryReplayLog(), aggs).aggregate_versions(no_entity)
        == []
    )
    untracked = StoreLineage(MemoryReplayJobs(), MemoryReplayLog())
    assert untracked.aggregate_versions(EVENT) is None


@pytest.mark.parametrize(
    ("request_fields", "expected"),
    [
        ({"entity_id": "user_123"}, True),
        ({"entity_id": "user_9"}, False),
        ({"source": "demo", "event_type": "other"}, False),
        ({"source": "demo", "start_time": "2025-12-28T10:00:01Z"}, False),
        ({"source": "demo", "end_time": "2025-12-28T10:00:00Z"}, False),  # half-open
        ({"source": "demo", "start_time": "2025-12-28T10:00:01Z", "include_rejected": True}, True),
    ],
)
def test_could_select_screens_only_what_cannot_match(
    request_fields: dict[str, Any], expected: bool
) -> None:
    request = {**DAY, **request_fields}
    assert could_select(request, EVENT) is expected
