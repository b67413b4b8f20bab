"""Replay on in-memory adapters: selection edges, duplicates, rejections, resume, cancel, pacing,
dry run and the ``sent = 0`` signal. Events go in through the real ingest sink."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from consumers.ingest import IngestResult
from infra.errors import NotFound
from infra.replay_jobs import JobConflict, JobStatus, MemoryReplayJobs
from infra.replay_queries import MemoryReplayQueries
from infra.targets import MemoryTarget, ReplayTarget
from producers.replay import ReplayService, Started, job_json, parse_request
from schemas.envelope import Status
from tests.unit.support import MemoryKit, event_body, submission

DAY = {"start_time": "2025-12-28T00:00:00Z", "end_time": "2025-12-29T00:00:00Z"}
# The memory kit ingests at 2025-12-29T01:00:00Z: rejected deliveries are windowed by that.
INGEST_WINDOW = {"start_time": "2025-12-29T00:00:00Z", "end_time": "2025-12-29T02:00:00Z"}


class Targets:
    """A target factory whose target a test can swap (a new process after a crash)."""

    def __init__(self, target: ReplayTarget | None = None) -> None:
        self.target = target or MemoryTarget()
        self.specs: list[str | None] = []

    def __call__(self, spec: str | None) -> ReplayTarget:
        self.specs.append(spec)
        return self.target


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def ingest(mk: MemoryKit, bodies: list[bytes], label: str) -> list[IngestResult]:
    subs = [submission(b, f"{label}:{i}", str(i)) for i, b in enumerate(bodies)]
    return mk.sink.ingest(subs, label=label)


def at(time: str, **changes: Any) -> bytes:
    return event_body(event_time=time, payload={"t": time}, **changes)


def make_service(
    mk: MemoryKit, targets: Targets, jobs: MemoryReplayJobs | None = None, **options: Any
) -> ReplayService:
    return ReplayService(
        index=mk.index,
        queries=MemoryReplayQueries(mk.index),
        jobs=jobs or MemoryReplayJobs(),
        targets=targets,
        archive=mk.archive,
        clock=mk.clock,
        metrics=mk.metrics,
        **options,
    )


def replay(service: ReplayService, **body: Any) -> Started:
    return service.replay(parse_request({**DAY, **body}), requester="tester")


@pytest.fixture
def mk() -> MemoryKit:
    return MemoryKit()


@pytest.fixture
def targets() -> Targets:
    return Targets()


@pytest.fixture
def service(mk: MemoryKit, targets: Targets) -> ReplayService:
    return make_service(mk, targets)


def sent_of(targets: Targets) -> list[dict[str, Any]]:
    target = targets.target
    assert isinstance(target, MemoryTarget)
    return target.messages


# -- selection ------------------------------------------------------------------------------------
def test_window_is_half_open_and_sub_second_times_sort(
    mk: MemoryKit, service: ReplayService, targets: Targets
) -> None:
    ingest(
        mk,
        [
            at("2025-12-29T00:00:00Z"),  # exactly at end: excluded
            at("2025-12-28T12:00:00.999999Z"),
            at("2025-12-28T00:00:00Z"),  # exactly at start: included
            at("2025-12-28T12:00:00.5Z"),
            at("2025-12-27T23:59:59.999999Z"),  # before start
            at("2025-12-28T23:59:59.999999Z"),  # the last microsecond in
            at("2025-12-28T12:00:00.000001Z"),
        ],
        "b",
    )
    job = replay(service, entity_id="user_123").job

    times = [m["event_time"] for m in sent_of(targets)]
    assert times == [
        "2025-12-28T00:00:00.000000Z",
        "2025-12-28T12:00:00.000001Z",
        "2025-12-28T12:00:00.500000Z",
        "2025-12-28T12:00:00.999999Z",
        "2025-12-28T23:59:59.999999Z",
    ]
    assert (job.status, job.scanned, job.matched, job.sent) == (JobStatus.COMPLETED, 5, 5, 5)
    assert job.plan["covered"]["first_event_time"] == "2025-12-28T00:00:00.000000Z"


def test_selectors_narrow_by_source_type_and_lag(mk: MemoryKit, service: ReplayService) -> None:
    ingest(
        mk,
        [
            at("2025-12-28T10:00:00Z"),
            at("2025-12-28T11:00:00Z", source="shop"),
            at("2025-12-28T12:00:00Z", event_type="purchase"),
            at("2025-12-28T23:30:00Z", entity_id="user_9"),  # 1 h 30 m late at ingest
        ],
        "b",
    )
    by = {
        "source": replay(service, source="demo", dry_run=True).job.matched,
        "type": replay(service, event_type="purchase", dry_run=True).job.matched,
        "entity+source": replay(service, entity_id="user_123", source="shop", dry_run=True),
        "late": replay(service, source="demo", min_lag_ms=7_200_000, dry_run=True).job.matched,
    }
    assert by["source"] == 3
    assert by["type"] == 1
    assert by["entity+source"].job.matched == 1
    assert by["late"] == 2  # demo events over 2 h late: all but the 23:30 one


def test_limit_caps_messages_and_reading(
    mk: MemoryKit, service: ReplayService, targets: Targets
) -> None:
    ingest(mk, [at(f"2025-12-28T10:00:{s:02d}Z") for s in range(20)], "b")
    job = replay(service, entity_id="user_123", limit=5).job
    assert (job.matched, job.sent) == (5, 5)
    assert job.scanned <= 5
    assert job.plan["limit_reached"] is True
    assert [m["event_time"][17:19] for m in sent_of(targets)] == ["00", "01", "02", "03", "04"]


# -- duplicates and rejections --------------------------------------------------------------------
def test_duplicates_out_by_default_and_in_with_their_own_archive_pointer(
    mk: MemoryKit, service: ReplayService, targets: Targets
) -> None:
    body = at("2025-12-28T10:00:00Z")
    ingest(mk, [body, at("2025-12-28T11:00:00Z")], "first")
    again = ingest(mk, [body], "again")
    assert again[0].status is Status.DUPLICATE

    without = replay(service, entity_id="user_123").job
    assert without.sent == 2
    with_dups = replay(service, entity_id="user_123", include_duplicates=True).job
    assert with_dups.sent == 3
    assert with_dups.plan["by_status"] == {"ACCEPTED": 2, "DUPLICATE": 1, "REJECTED": 0}

    messages = sent_of(targets)[2:]
    assert [m["status"] for m in messages] == ["ACCEPTED", "DUPLICATE", "ACCEPTED"]
    first, dup = messages[0], messages[1]
    assert dup["event_id"] == first["event_id"]
    assert dup["occurrence_id"] == "again:0"
    assert dup["archive"]["key"] != first["archive"]["key"]
    assert dup["archive"] == again[0].archive.to_json()  # type: ignore[union-attr]


def test_rejected_out_by_default_and_in_windowed_by_ingest_time(
    mk: MemoryKit, service: ReplayService, targets: Targets
) -> None:
    ingest(
        mk,
        [at("2025-12-29T00:30:00Z"), event_body(payload="not an object"), b"{broken"],
        "b",
    )
    without = service.replay(parse_request({**INGEST_WINDOW, "source": "demo"}), requester="t").job
    assert without.sent == 1
    with_rejected = service.replay(
        parse_request({**INGEST_WINDOW, "source": "demo", "include_rejected": True}),
        requester="t",
    ).job
    assert with_rejected.sent == 2
    rejected = sent_of(targets)[-1]
    assert rejected["status"] == "REJECTED"
    assert rejected["reason"] == "payload_not_object"
    assert rejected["archive"]["key"].startswith("quarantine/")
    # By entity (no source given): looked for under the entity's sources and ``_unknown``.
    by_entity = service.replay(
        parse_request({**INGEST_WINDOW, "entity_id": "user_123", "include_rejected": True}),
        requester="t",
    ).job
    assert by_entity.sent == 2
    assert by_entity.plan["rejected_sources"] == ["_unknown", "demo"]
    # Outside the ingest window: none.
    assert replay(service, source="demo", include_rejected=True, dry_run=True).job.matched == 0


# -- messages -------------------------------------------------------------------------------------
def test_messages_carry_the_contract_fields_and_optionally_the_envelope(
    mk: MemoryKit, service: ReplayService, targets: Targets
) -> None:
    [result] = ingest(mk, [at("2025-12-28T10:00:00Z")], "b")
    job = replay(service, entity_id="user_123", with_payload=True).job
    [message] = sent_of(targets)
    assert message["replay_id"] == job.replay_id
    assert message["event_id"] == result.event_id
    assert (message["entity_id"], message["source"], message["event_type"]) == (
        "user_123",
        "demo",
        "heartbeat",
    )
    assert message["event_time"] == "2025-12-28T10:00:00.000000Z"
    assert message["status"] == "ACCEPTED"
    assert message["archive"] == result.archive.to_json()  # type: ignore[union-attr]
    assert message["envelope"]["payload"] == {"t": "2025-12-28T10:00:00Z"}
    assert mk.metrics.counter("ReplayMessageCount", source="demo", event_type="heartbeat") == 1


def test_fifo_group_is_the_entity_and_dedup_id_the_replay_and_event(
    mk: MemoryKit, targets: Targets
) -> None:
    targets.target = MemoryTarget(fifo=True)
    ingest(mk, [at("2025-12-28T10:00:00Z", entity_id=f"user_{i}") for i in range(3)], "b")
    job = replay(make_service(mk, targets), source="demo").job
    target = targets.target
    assert isinstance(target, MemoryTarget)
    for sent in target.sent:
        body = json.loads(sent.body)
        assert sent.group == body["entity_id"]
        assert sent.dedup_id == f"{job.replay_id}:{body['event_id']}"
        assert len(sent.dedup_id) <= 128


# -- dry run and sent = 0 -------------------------------------------------------------------------
def test_dry_run_plans_fully_and_writes_and_sends_nothing(mk: MemoryKit, targets: Targets) -> None:
    jobs = MemoryReplayJobs()
    ingest(mk, [at(f"2025-12-28T1{h}:00:00Z") for h in range(4)], "b")
    service = make_service(mk, targets, jobs)
    started = replay(service, entity_id="user_123", dry_run=True)
    doc = job_json(started.job, dry_run=started.dry_run)

    assert sent_of(targets) == []
    assert jobs.recent() == []
    with pytest.raises(NotFound):
        service.get(started.job.replay_id)
    assert (doc["dry_run"], doc["matched"], doc["sent"]) == (True, 4, 0)
    assert doc["estimated_bytes"] == sum(len(at(f"2025-12-28T1{h}:00:00Z")) for h in range(4))
    assert len(doc["first_event_ids"]) == 4
    assert doc["covered"]["last_event_time"] == "2025-12-28T13:00:00.000000Z"


def test_dry_run_setting_wins_over_the_request(mk: MemoryKit, targets: Targets) -> None:
    ingest(mk, [at("2025-12-28T10:00:00Z")], "b")
    started = replay(make_service(mk, targets, dry_run=True), entity_id="user_123")
    assert started.dry_run is True
    assert sent_of(targets) == []


def test_sent_zero_is_a_signal_with_a_reason(mk: MemoryKit, service: ReplayService) -> None:
    nothing = replay(service, entity_id="user_123").job
    assert nothing.status is JobStatus.COMPLETED
    assert nothing.signal is not None and nothing.signal["reason"] == "nothing_matched"

    ingest(mk, [event_body(payload="bad")], "bad")
    rejected = service.replay(parse_request({**INGEST_WINDOW, "source": "demo"}), requester="t").job
    assert rejected.signal is not None and rejected.signal["reason"] == "all_rejected"

    # A retry with the same idempotency key but another event time is a duplicate whose first
    # copy lies outside the window.
    ingest(mk, [at("2025-12-27T10:00:00Z", idempotency_key="k1")], "first")
    ingest(mk, [at("2025-12-29T00:30:00Z", idempotency_key="k1")], "retry")
    dups = service.replay(
        parse_request({**INGEST_WINDOW, "source": "demo", "include_rejected": True}),
        requester="t",
    ).job
    assert dups.sent == 1  # the rejected one
    only_dups = service.replay(
        parse_request({**INGEST_WINDOW, "entity_id": "user_123", "source": "demo"}),
        requester="t",
    ).job
    assert only_dups.signal is not None
    assert only_dups.signal["reason"] == "all_duplicates_or_rejected"


# -- resume, failures, cancel ---------------------------------------------------------------------
def keys_sent(*targets: MemoryTarget) -> list[str]:
    return [m.key for t in targets for m in t.sent]


def test_resume_after_a_crash_sends_the_rest_once(mk: MemoryKit) -> None:
    ingest(mk, [at(f"2025-12-28T10:{m:02d}:00Z") for m in range(35)], "b")
    ingest(mk, [at("2025-12-28T10:05:00Z")], "dup")  # one duplicate delivery
    crashing = MemoryTarget(crash_after_batches=2)
    targets = Targets(crashing)
    service = make_service(mk, targets)
    job = replay(service, entity_id="user_123", include_duplicates=True).job
    assert job.status is JobStatus.FAILED
    assert "TargetCrash" in (job.reason or "")
    assert job.sent == 20

    targets.target = fresh = MemoryTarget()
    done = service.resume(job.replay_id)
    assert done.status is JobStatus.COMPLETED
    assert (done.sent, done.matched) == (36, 36)
    keys = keys_sent(crashing, fresh)
    assert len(keys) == len(set(keys)) == 36
    with pytest.raises(JobConflict):  # nothing left to resume
        service.resume(job.replay_id)


def test_partial_batch_failures_are_retried_and_hard_ones_resumed(mk: MemoryKit) -> None:
    results = ingest(mk, [at(f"2025-12-28T10:{m:02d}:00Z") for m in range(15)], "b")
    ids = [r.event_id for r in results]
    flaky = MemoryTarget(fail_once=[ids[2], ids[7]], always_fail=[ids[4]])
    targets = Targets(flaky)
    service = make_service(mk, targets)
    job = replay(service, entity_id="user_123").job

    assert job.status is JobStatus.FAILED
    assert job.failed == 1 and ids[4] in (job.reason or "")
    assert job.sent == 9  # the first batch of 10 but for the hard failure
    assert decoded_cursor(job.cursor)[1].endswith(ids[3])
    assert set(job.sent_ahead) == set(ids[5:10])

    targets.target = fixed = MemoryTarget()
    done = service.resume(job.replay_id)
    assert done.status is JobStatus.COMPLETED and done.sent == 15
    assert keys_sent(fixed) == [ids[4], *ids[10:]]
    assert sorted(keys_sent(flaky, fixed)) == sorted(ids)


def decoded_cursor(text: str | None) -> list[str]:
    assert text is not None
    value: list[str] = json.loads(text)
    return value


def test_resume_in_the_middle_of_an_events_duplicates(mk: MemoryKit) -> None:
    body = at("2025-12-28T10:00:00Z")
    ingest(mk, [body], "first")
    for n in range(12):  # twelve duplicate deliveries of one event
        ingest(mk, [body], f"again{n:02d}")
    ingest(mk, [at("2025-12-28T11:00:00Z")], "later")
    crashing = MemoryTarget(crash_after_batches=1)
    targets = Targets(crashing)
    service = make_service(mk, targets)
    job = replay(service, entity_id="user_123", include_duplicates=True).job
    assert job.sent == 10 and len(decoded_cursor(job.cursor)) == 3

    targets.target = fresh = MemoryTarget()
    done = service.resume(job.replay_id)
    assert done.sent == 14
    keys = keys_sent(crashing, fresh)
    assert len(keys) == len(set(keys)) == 14


def test_cancel_stops_a_running_job_at_its_next_checkpoint(mk: MemoryKit) -> None:
    ingest(mk, [at(f"2025-12-28T10:{m:02d}:00Z") for m in range(40)], "b")
    holder: dict[str, str] = {}
    target = MemoryTarget(on_batch=lambda n: service.cancel(holder["id"]) if n == 2 else None)
    service = make_service(mk, Targets(target), checkpoint_every=10)
    started = service.replay(
        parse_request({**DAY, "entity_id": "user_123"}),
        requester="t",
        on_planned=lambda job: holder.setdefault("id", job.replay_id),
    )
    job = started.job
    assert job.status is JobStatus.CANCELLED
    assert job.sent == 20 and job.matched == 40
    assert len(target.sent) == 20
    with pytest.raises(JobConflict):
        service.resume(job.replay_id)
    with pytest.raises(JobConflict):
        service.cancel(job.replay_id)


def test_a_running_job_is_resumed_only_when_stale_or_forced(mk: MemoryKit) -> None:
    ingest(mk, [at("2025-12-28T10:00:00Z")], "b")
    jobs = MemoryReplayJobs()
    service = make_service(mk, Targets(), jobs)
    request = parse_request({**DAY, "entity_id": "user_123"})
    stale, forced = (service.start(request, requester="t", sync_max=0).job for _ in range(2))
    now = "2025-12-29T01:00:00.000000Z"
    for job in (stale, forced):  # a process took them and died without a word
        jobs.claim(job.replay_id, "dead-runner", now, stale_before=now)

    with pytest.raises(JobConflict, match="RUNNING"):
        service.resume(stale.replay_id)
    assert service.resume(forced.replay_id, force=True).status is JobStatus.COMPLETED
    mk.clock.advance(minutes=5)
    assert service.resume(stale.replay_id).status is JobStatus.COMPLETED


def test_a_big_replay_is_recorded_at_once_and_finished_in_the_background(
    mk: MemoryKit, targets: Targets
) -> None:
    ingest(mk, [at(f"2025-12-28T10:{m:02d}:00Z") for m in range(30)], "b")
    service = make_service(mk, targets)
    started = service.start(
        parse_request({**DAY, "entity_id": "user_123"}), requester="t", sync_max=10
    )
    assert started.background is not None
    assert started.job.status is JobStatus.PLANNED and started.job.plan["planning"] is True
    assert service.get(started.job.replay_id).status is JobStatus.PLANNED
    assert sent_of(targets) == []
    job = started.background(None)
    assert (job.status, job.matched, job.sent, job.scanned) == (JobStatus.COMPLETED, 30, 30, 30)
    assert "planning" not in service.get(job.replay_id).plan


def test_a_plan_too_big_to_hold_is_read_again_while_sending(
    mk: MemoryKit, targets: Targets
) -> None:
    ingest(mk, [at(f"2025-12-28T10:{m:02d}:00Z") for m in range(30)], "b")
    service = make_service(mk, targets, max_planned=10, page_size=7)
    job = replay(service, entity_id="user_123").job
    assert (job.matched, job.sent, job.scanned) == (30, 30, 60)
    keys = [m["event_id"] for m in sent_of(targets)]
    assert len(set(keys)) == 30


def test_rate_limit_paces_batches(mk: MemoryKit, targets: Targets) -> None:
    ingest(mk, [at(f"2025-12-28T10:{m:02d}:00Z") for m in range(20)], "b")
    clock = FakeTime()
    service = make_service(mk, targets, sleep=clock.sleep, monotonic=clock.monotonic)
    start = clock.now
    job = replay(service, entity_id="user_123", rate_limit=4).job
    assert job.sent == 20
    target = targets.target
    assert isinstance(target, MemoryTarget) and target.calls == 5  # batches of at most 4
    assert clock.now - start == pytest.approx(4.0)  # 20 messages at 4/s, the first batch at once


def test_interrupt_stops_between_batches_and_is_resumable(mk: MemoryKit) -> None:
    ingest(mk, [at(f"2025-12-28T10:{m:02d}:00Z") for m in range(25)], "b")
    calls: list[int] = []

    def stop_after_two() -> bool:
        calls.append(1)
        return len(calls) > 2

    first = MemoryTarget()
    targets = Targets(first)
    service = make_service(mk, targets)
    job = service.replay(
        parse_request({**DAY, "entity_id": "user_123"}), requester="t", should_stop=stop_after_two
    ).job
    assert (job.status, job.reason, job.sent) == (JobStatus.FAILED, "interrupted", 20)
    targets.target = second = MemoryTarget()
    assert service.resume(job.replay_id).sent == 25
    assert len(set(keys_sent(first, second))) == 25


def progress_recorder() -> tuple[list[tuple[int, int]], Callable[[int, int], None]]:
    seen: list[tuple[int, int]] = []
    return seen, lambda sent, matched: seen.append((sent, matched))


def test_progress_reports_sent_of_matched(mk: MemoryKit, service: ReplayService) -> None:
    ingest(mk, [at(f"2025-12-28T10:{m:02d}:00Z") for m in range(12)], "b")
    seen, callback = progress_recorder()
    service.replay(
        parse_request({**DAY, "entity_id": "user_123"}), requester="t", progress=callback
    )
    assert seen[0] == (0, 12) and seen[-1] == (12, 12)


def test_jobs_are_listed_newest_first_with_requester(mk: MemoryKit, targets: Targets) -> None:
    service = make_service(mk, targets)
    first = replay(service, entity_id="a").job
    mk.clock.advance(seconds=1)
    second = replay(service, entity_id="b").job
    listed = service.recent()
    assert [j.replay_id for j in listed] == [second.replay_id, first.replay_id]
    assert listed[0].requester == "tester"
    assert listed[0].request["entity_id"] == "b"
    assert listed[0].created_at > listed[1].created_at


def test_a_message_too_large_with_its_payload_goes_pointer_only_and_the_job_completes(
    mk: MemoryKit, service: ReplayService, targets: Targets
) -> None:
    # within the 256 KiB event limit, over the 256 KiB message limit once wrapped with its envelope
    big = event_body(event_time="2025-12-28T10:01:00Z", payload={"blob": "x" * 261_950})
    small = [at(f"2025-12-28T10:0{m}:00Z") for m in (0, 2, 3)]
    results = ingest(mk, [small[0], big, *small[1:]], "b")
    assert all(r.status is Status.ACCEPTED for r in results)
    job = replay(service, entity_id="user_123", with_payload=True).job
    assert job.status is JobStatus.COMPLETED
    assert job.sent == job.matched == 4 and job.payload_omitted == 1
    assert job_json(job)["payload_omitted"] == 1
    by_id = {m["event_id"]: m for m in sent_of(targets)}
    assert set(by_id) == {r.event_id for r in results}
    pointer_only = by_id[results[1].event_id]
    assert pointer_only["payload_omitted"] == "too_large"
    assert "envelope" not in pointer_only and "raw" not in pointer_only
    assert pointer_only["archive"] == results[1].archive.to_json()  # type: ignore[union-attr]
    others = [by_id[r.event_id] for r in results if r is not results[1]]
    assert all("payload_omitted" not in m and "envelope" in m for m in others)
    assert service.get(job.replay_id).payload_omitted == 1


def test_a_cancel_stops_a_paced_run_within_a_second_with_its_real_count(mk: MemoryKit) -> None:
    ingest(mk, [at(f"2025-12-28T{h:02d}:{m:02d}:00Z") for h in (8, 9) for m in range(60)], "b")
    target = MemoryTarget()
    service = make_service(mk, Targets(target))  # real time: the pacer really sleeps
    planned: list[str] = []
    done: list[Any] = []

    def run() -> None:
        request = parse_request({**DAY, "entity_id": "user_123", "rate_limit": 40})
        done.append(
            service.replay(request, requester="t", on_planned=lambda j: planned.append(j.replay_id))
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while len(target.sent) < 20 and time.monotonic() < deadline:  # 40 of 120 messages a second
        time.sleep(0.01)
    cancelled_at = time.monotonic()
    job = service.cancel(planned[0])
    stopped = service.wait_stopped(job, timeout=5.0)
    assert stopped is not None, "the runner never recorded that it stopped"
    assert time.monotonic() - cancelled_at < 1.5
    thread.join(timeout=2.0)
    assert not thread.is_alive()
    assert stopped.status is JobStatus.CANCELLED
    assert stopped.sent == len(target.sent) < 120
    assert done[0].job.sent == stopped.sent
