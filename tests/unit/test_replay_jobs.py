"""The replay job state machine (in memory; the DynamoDB adapter runs the same base logic and is
covered by the integration tier)."""

from __future__ import annotations

import pytest

from infra.errors import NotFound
from infra.replay_jobs import Expect, JobConflict, JobStatus, MemoryReplayJobs, Progress, ReplayJob

T0, T1, T2 = (
    "2025-12-29T01:00:00.000000Z",
    "2025-12-29T01:01:00.000000Z",
    "2025-12-29T01:05:00.000000Z",
)


def new_job(jobs: MemoryReplayJobs, replay_id: str = "rp-1") -> ReplayJob:
    return jobs.create(
        ReplayJob(replay_id, JobStatus.PLANNED, "me", {"entity_id": "u"}, "memory://", T0)
    )


def progress(sent: int) -> Progress:
    return Progress(scanned=sent, matched=10, sent=sent, failed=0, cursor=f'["e","{sent}"]')


def test_lifecycle_planned_running_completed() -> None:
    jobs = MemoryReplayJobs()
    new_job(jobs)
    with pytest.raises(JobConflict):
        new_job(jobs)
    running = jobs.claim("rp-1", "r1", T0, stale_before=T0)
    assert (running.status, running.runner, running.started_at) == (JobStatus.RUNNING, "r1", T0)
    assert jobs.checkpoint("rp-1", "r1", progress(5), T1).sent == 5
    done = jobs.finish("rp-1", "r1", JobStatus.COMPLETED, progress(10), T1)
    assert (done.status, done.sent, done.finished_at) == (JobStatus.COMPLETED, 10, T1)
    with pytest.raises(JobConflict):
        jobs.claim("rp-1", "r2", T2, stale_before=T2, force=True)
    with pytest.raises(NotFound):
        jobs.get("rp-2")


def test_only_the_owning_runner_writes_and_stale_jobs_can_be_taken_over() -> None:
    jobs = MemoryReplayJobs()
    new_job(jobs)
    jobs.claim("rp-1", "r1", T0, stale_before=T0)
    with pytest.raises(JobConflict):
        jobs.claim("rp-1", "r2", T1, stale_before=T0)  # r1 wrote at T0: not stale before T0
    jobs.claim("rp-1", "r2", T2, stale_before=T1)  # stale: taken over
    with pytest.raises(JobConflict) as lost:
        jobs.checkpoint("rp-1", "r1", progress(3), T2)
    assert lost.value.job.runner == "r2"


def test_cancel_is_final_but_keeps_the_runners_counts() -> None:
    jobs = MemoryReplayJobs()
    new_job(jobs)
    jobs.claim("rp-1", "r1", T0, stale_before=T0)
    cancelled = jobs.cancel("rp-1", T1, "operator said so")
    assert cancelled.status is JobStatus.CANCELLED and cancelled.reason == "operator said so"
    assert jobs.checkpoint("rp-1", "r1", progress(4), T1).status is JobStatus.CANCELLED
    final = jobs.finish("rp-1", "r1", JobStatus.COMPLETED, progress(6), T2)
    assert (final.status, final.sent) == (JobStatus.CANCELLED, 6)
    with pytest.raises(JobConflict):
        jobs.cancel("rp-1", T2)
    with pytest.raises(JobConflict):
        jobs.claim("rp-1", "r3", T2, stale_before=T2, force=True)


def test_failed_jobs_resume_and_clear_their_reason() -> None:
    jobs = MemoryReplayJobs()
    new_job(jobs)
    jobs.claim("rp-1", "r1", T0, stale_before=T0)
    failed = jobs.finish("rp-1", "r1", JobStatus.FAILED, progress(2), T1, reason="boom")
    assert failed.reason == "boom"
    again = jobs.claim("rp-1", "r2", T2, stale_before=T0)
    assert (again.status, again.reason, again.started_at) == (JobStatus.RUNNING, None, T0)


def test_expect_as_a_dynamodb_condition() -> None:
    condition, names, values = Expect(
        frozenset({JobStatus.FAILED, JobStatus.PLANNED}), runner="r", stale_before=T0
    ).dynamo()
    assert condition.startswith("attribute_exists(replay_id) AND (#status IN (")
    assert "#updated < :stale" in condition and "#runner = :runner" in condition
    assert values[":runner"] == {"S": "r"} and names["#status"] == "status"
