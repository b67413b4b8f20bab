"""Replay: re-emit exactly the events an operator chose, safely, with a job record.

``ReplayRequest`` is the contract's request (ARCHITECTURE.md, "Replay"), validated once for the
CLI, the HTTP API and Python callers alike; ``parse_request`` turns any mapping into one or an
``InvalidReplayRequest`` with a reason code (both in ``replay_request``). ``ReplayService``
plans (``replay_plan``), records the job (``ReplayJobs``), sends (``ReplayTarget``, with the
helpers of ``replay_send``) and resumes or cancels jobs. ``ReplayClient`` (``replay_client``)
drives the HTTP API from ops scripts. Everything public is importable from here.

How a replay stays exact:

* The cursor (position of the last message known sent) advances only after a batch was
  accepted, and is written at checkpoints (every ``checkpoint_every`` messages or
  ``checkpoint_seconds``) and whenever a run stops. A batch that was partly accepted records the
  accepted keys past the cursor (``sent_ahead``) so a resume skips them. A resume therefore sends
  nothing twice and misses nothing, unless the process is killed outright between a send and
  the next checkpoint: then at most the messages since that checkpoint are sent again (on a FIFO
  queue SQS drops them by deduplication id within its 5-minute window).
* Only one runner owns a RUNNING job (conditional writes); a runner reads the job's status
  between batches: a paced run every second, so a cancel stops it within a second (or one
  batch); a run at full speed every ``UNPACED_CHECK_BATCHES`` batches (about a second on SQS)
  or ``UNPACED_CHECK_SECONDS``, whichever comes first, so its status reads stay a few per
  thousand messages. The job keeps its final counts and ``stopped_at``.
* Dry run (``dry_run`` or ``DRY_RUN=true``) plans fully, writes and sends nothing.

Errors: ``InvalidReplayRequest`` / ``InvalidTarget`` (the caller's fault, 4xx), ``NotFound``,
``JobConflict`` (a job not in a state that allows the operation), ``BackendError``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from itertools import islice
from typing import Any

from infra.archive import ArchiveReader, RawArchive
from infra.clock import Clock
from infra.errors import KitError
from infra.index import EventIndex
from infra.metrics import Metrics
from infra.replay_jobs import JobConflict, JobStatus, Progress, ReplayJob, ReplayJobs
from infra.replay_log import ReplayLog
from infra.replay_queries import ReplayQueries
from infra.targets import ReplayTarget, TargetMessage, fifo_dedup_id, message_group_id
from producers.replay_client import ReplayClient, ReplayClientError
from producers.replay_plan import (
    DEFAULT_PAGE_SIZE,
    UNKNOWN_SOURCE,
    PlannedMessage,
    Planner,
    PlanStats,
    PlanSummary,
    Position,
    decode_cursor,
    encode_cursor,
)
from producers.replay_request import (
    MAX_WINDOW_DAYS,
    REPLAY_ID,
    InvalidReplayRequest,
    ReplayRequest,
    check_replay_id,
    iso,
    parse_request,
)
from producers.replay_send import Checkpoints, Pacer, chunks, message_body
from schemas.codec import ArchiveRecord
from schemas.envelope import Status, format_time

__all__ = [
    "MAX_WINDOW_DAYS",
    "REPLAY_ID",
    "SYNC_MAX_MESSAGES",
    "InvalidReplayRequest",
    "ReplayClient",
    "ReplayClientError",
    "ReplayRequest",
    "ReplayService",
    "Started",
    "check_replay_id",
    "job_json",
    "message_body",
    "parse_request",
]

log = logging.getLogger(__name__)

METRIC_MESSAGES = "ReplayMessageCount"
SYNC_MAX_MESSAGES = 1_000  # the HTTP API runs a replay this small inside the request
MAX_PLANNED_IN_MEMORY = 100_000  # a bigger plan is read again while sending (see docs)
CHECKPOINT_EVERY = 1_000
CHECKPOINT_SECONDS = 30.0
STATUS_CHECK_SECONDS = 1.0  # a paced run notices a cancel within this (one GetItem)
UNPACED_CHECK_BATCHES = 50  # a run at full speed reads its status every this many batches
UNPACED_CHECK_SECONDS = 10.0  # or after this long, whichever comes first
CANCEL_WAIT_SECONDS = 12.0  # how long `cancel` waits for a running job's runner to stop
DEFAULT_STALE_AFTER = timedelta(minutes=2)
PROBE_MAX_PAGES = 4
PAYLOAD_TOO_LARGE = "too_large"  # ``payload_omitted``: the message with it was over the limit
REPLAY_ID_PREFIX = "rp"

ProgressCallback = Callable[[int, int], None]  # (sent, matched)
StopCheck = Callable[[], bool]
TargetFactory = Callable[[str | None], ReplayTarget]


# -- results --------------------------------------------------------------------------------------
def _log_entry(m: PlannedMessage, sent_at: str) -> dict[str, Any]:
    return {
        "key": m.key,
        "event_id": m.event_id,
        "occurrence_id": m.occurrence_id,
        "status": m.status,
        "sent_at": sent_at,
    }


def job_json(job: ReplayJob, *, dry_run: bool = False) -> dict[str, Any]:
    """The job as the CLI and the HTTP API show it: the contract's fields first."""
    request = job.request
    plan = job.plan
    return {
        "replay_id": job.replay_id,
        "entity_id": request.get("entity_id"),
        "source": request.get("source"),
        "event_type": request.get("event_type"),
        "scanned": job.scanned,
        "matched": job.matched,
        "sent": job.sent,
        "failed": job.failed,
        "payload_omitted": job.payload_omitted,
        "dry_run": dry_run,
        "status": job.status.value,
        "reason": job.reason,
        "signal": job.signal,
        "start_time": request.get("start_time"),
        "end_time": request.get("end_time"),
        "limit": request.get("limit"),
        "include_duplicates": request.get("include_duplicates", False),
        "include_rejected": request.get("include_rejected", False),
        "min_lag_ms": request.get("min_lag_ms"),
        "rate_limit": request.get("rate_limit"),
        "with_payload": request.get("with_payload", False),
        "target": job.target,
        "requester": job.requester,
        "estimated_bytes": plan.get("estimated_bytes", 0),
        "by_status": plan.get("by_status", {}),
        "first_event_ids": plan.get("first_event_ids", []),
        "covered": plan.get("covered", {}),
        "limit_reached": plan.get("limit_reached", False),
        "skipped_unarchived": plan.get("skipped_unarchived", 0),
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "updated_at": job.updated_at,
        "cursor": job.cursor,
    }


@dataclass(frozen=True, slots=True)
class Started:
    """What ``start`` answers: the job now and, when it is not done yet, the rest of the work
    (``background``, to run on another thread)."""

    job: ReplayJob
    dry_run: bool
    background: Callable[[StopCheck | None], ReplayJob] | None = None


@dataclass(slots=True)
class _Draft:
    """A replay being planned: the job so far, its target, and the plan read so far."""

    job: ReplayJob
    request: ReplayRequest
    target: ReplayTarget
    stats: PlanStats
    summary: PlanSummary
    stream: Iterator[PlannedMessage]
    kept: list[PlannedMessage] | None = field(default_factory=list)  # None: too many to hold
    complete: bool = False

    def read(self, keep: int, up_to: int | None = None) -> None:
        """Read the plan on, to its end or until ``up_to`` messages were read in all. A read
        that fails releases the target (nothing was sent yet)."""
        try:
            while up_to is None or self.summary.matched < up_to:
                message = next(self.stream, None)
                if message is None:
                    self.complete = True
                    return
                self.summary.add(message)
                if self.kept is not None:
                    self.kept.append(message)
                    if len(self.kept) > keep:
                        self.kept = None
        except BaseException:
            self.target.close()
            raise


@dataclass(slots=True)
class _Run:
    """A run's moving state: what the job record says at the next write."""

    job: ReplayJob
    runner: str
    scanned: int
    matched: int
    sent: int
    cursor: Position | None
    plan: dict[str, Any]
    skip: set[str] = field(default_factory=set)  # sent by an earlier run, past its cursor
    ahead: set[str] = field(default_factory=set)  # sent by this run, past the cursor
    reading: PlanStats | None = None  # a second read of a plan too big to hold
    failed: int = 0
    payload_omitted: int = 0  # sent pointer-only (too large with the payload)
    stop_status: JobStatus | None = None
    stop_reason: str | None = None
    taken_over: bool = False
    status_checked: float | None = None  # monotonic time of the last status read
    batches_unchecked: int = 0  # batches sent since then
    unlogged: list[dict[str, Any]] = field(default_factory=list)  # sent, not yet in the log
    logged_cursor: Position | None = None  # the cursor when the log last caught up

    def __post_init__(self) -> None:
        self.logged_cursor = self.cursor

    def progress(self) -> Progress:
        return Progress(
            scanned=self.scanned + (self.reading.scanned if self.reading else 0),
            matched=self.matched,
            sent=self.sent,
            failed=self.failed,
            cursor=encode_cursor(self.cursor),
            sent_ahead=tuple(sorted(self.skip | self.ahead)),
            plan=self.plan,
            payload_omitted=self.payload_omitted,
        )

    def logged_progress(self) -> Progress:
        """Progress as far as the sent log reaches: what a resume must not send again. The
        messages not in the log count as not sent, so a resume sends (and logs) them again."""
        unlogged = {str(e["key"]) for e in self.unlogged}
        return replace(
            self.progress(),
            sent=self.sent - len(self.unlogged),
            cursor=encode_cursor(self.logged_cursor),
            sent_ahead=tuple(sorted((self.skip | self.ahead) - unlogged)),
        )


class ReplayService:
    def __init__(
        self,
        *,
        index: EventIndex,
        queries: ReplayQueries,
        jobs: ReplayJobs,
        targets: TargetFactory,
        archive: RawArchive,
        clock: Clock,
        metrics: Metrics,
        dry_run: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        checkpoint_every: int = CHECKPOINT_EVERY,
        checkpoint_seconds: float = CHECKPOINT_SECONDS,
        status_check_seconds: float = STATUS_CHECK_SECONDS,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        max_planned: int = MAX_PLANNED_IN_MEMORY,
        page_size: int = DEFAULT_PAGE_SIZE,
        log: ReplayLog | None = None,
    ) -> None:
        self._queries = queries
        self._log = log
        self._planner = Planner(index, queries, page_size=page_size)
        self.jobs = jobs
        self._targets = targets
        self._archive = archive
        self._clock = clock
        self._metrics = metrics
        self.dry_run = dry_run
        self._sleep = sleep
        self._monotonic = monotonic
        self._checkpoint_every = checkpoint_every
        self._checkpoint_seconds = checkpoint_seconds
        self._status_check_seconds = status_check_seconds
        self._stale_after = stale_after
        self._max_planned = max_planned

    # -- public ---------------------------------------------------------------------------------
    def replay(
        self,
        request: ReplayRequest,
        *,
        requester: str,
        progress: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
        on_planned: Callable[[ReplayJob], None] | None = None,
    ) -> Started:
        """Plan and (unless it is a dry run) send, here and now. ``on_planned`` sees the job
        between the two (e.g. to size a progress bar)."""
        draft = self._draft(request, requester)
        draft.read(self._max_planned)
        job = self._planned(draft)
        if self._is_dry(request):
            return self._dry_answer(draft, job)
        if on_planned is not None:
            on_planned(job)
        return Started(self._run_new(draft, job, progress, should_stop), False)

    def start(
        self, request: ReplayRequest, *, requester: str, sync_max: int = SYNC_MAX_MESSAGES
    ) -> Started:
        """Plan; a dry run answers the plan. A replay of at most ``sync_max`` messages is sent
        here and now; a bigger one is recorded (PLANNED) at once, and ``background`` (to run on
        another thread) plans the rest and sends it."""
        draft = self._draft(request, requester)
        if self._is_dry(request):
            draft.read(self._max_planned)
            return self._dry_answer(draft, self._planned(draft))
        draft.read(self._max_planned, up_to=sync_max + 1)
        if draft.complete:
            return Started(self._run_new(draft, self._planned(draft), None, None), False)
        job = self._planned(draft)
        try:
            self.jobs.create(job)
        except BaseException:
            draft.target.close()
            raise

        def rest(should_stop: StopCheck | None = None) -> ReplayJob:
            return self._run_rest(draft, job, should_stop)

        return Started(job, False, rest)

    def resume(
        self,
        replay_id: str,
        *,
        force: bool = False,
        progress: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
        on_planned: Callable[[ReplayJob], None] | None = None,
    ) -> ReplayJob:
        """Continue a PLANNED or FAILED job (or an abandoned RUNNING one; any RUNNING one with
        ``force``) from its cursor, skipping what it already sent."""
        job = self.jobs.get(check_replay_id(replay_id))
        if job.status in (JobStatus.COMPLETED, JobStatus.CANCELLED):
            raise JobConflict(f"replay {replay_id} is {job.status.value}: nothing to resume", job)
        request = ReplayRequest.model_validate(job.request)
        if self.dry_run:
            return self._dry_resume(job, request)
        target = self._targets(request.target)
        runner = uuid.uuid4().hex
        try:
            job = self.jobs.claim(
                replay_id, runner, self._now(), stale_before=self._stale_before(), force=force
            )
        except JobConflict as exc:
            target.close()
            if exc.job.status is JobStatus.RUNNING:
                raise JobConflict(
                    f"replay {replay_id} is RUNNING (last update {exc.job.updated_at}); "
                    "if its runner is gone, resume with force",
                    exc.job,
                ) from exc
            raise
        skip = set(job.sent_ahead)
        limit = request.limit - job.sent + len(skip) if request.limit else None
        cursor = decode_cursor(job.cursor)
        sources = job.plan.get("rejected_sources")
        stats = PlanStats()
        stream = self._planner.messages(
            request.spec(), stats, cursor=cursor, limit=limit, rejected_sources=sources
        )
        draft = _Draft(job, request, target, stats, PlanSummary(), stream)
        draft.read(self._max_planned)
        again = 0 if draft.kept is None else sum(1 for m in draft.kept if m.key in skip)
        plan = {**job.plan, **draft.summary.to_json(stats, sources or [])}
        run = _Run(
            job=job,
            runner=runner,
            scanned=job.scanned + stats.scanned,
            matched=job.sent + draft.summary.matched - again,
            sent=job.sent,
            cursor=cursor,
            plan=plan,
            skip=skip,
            payload_omitted=job.payload_omitted,
        )
        if on_planned is not None:
            on_planned(replace(job, matched=run.matched, scanned=run.scanned, plan=plan))
        messages = self._sendable(draft, run, cursor=cursor, limit=limit, sources=sources)
        return self._execute(run, request, messages, target, progress, should_stop)

    def cancel(self, replay_id: str, reason: str = "cancelled") -> ReplayJob:
        """Stop a job for good; a running one stops before its next batch. A dry run answers
        the job as it is and changes nothing."""
        check_replay_id(replay_id)
        if self.dry_run:
            job = self.jobs.get(replay_id)
            if job.status in (JobStatus.COMPLETED, JobStatus.CANCELLED):
                raise JobConflict(
                    f"replay {replay_id} is {job.status.value}: it cannot be cancelled", job
                )
            return job
        try:
            return self.jobs.cancel(replay_id, self._now(), reason)
        except JobConflict as exc:
            raise JobConflict(
                f"replay {replay_id} is {exc.job.status.value}: it cannot be cancelled", exc.job
            ) from exc

    def wait_stopped(
        self, job: ReplayJob, timeout: float = CANCEL_WAIT_SECONDS, poll: float = 0.1
    ) -> ReplayJob | None:
        """After a cancel: the job once its runner recorded that it stopped (with its final
        counts), or None if no runner did within ``timeout`` (none running, or one gone)."""
        deadline = self._monotonic() + timeout
        while job.runner is not None and job.stopped_at is None:
            if self._monotonic() >= deadline:
                return None
            self._sleep(poll)
            job = self.jobs.get(job.replay_id)
        return job if job.runner is not None else None

    def get(self, replay_id: str) -> ReplayJob:
        return self.jobs.get(check_replay_id(replay_id))

    def recent(self, limit: int = 20) -> list[ReplayJob]:
        return self.jobs.recent(limit)

    def _dry_resume(self, job: ReplayJob, request: ReplayRequest) -> ReplayJob:
        """What a resume would send (``matched``: the messages left after the cursor); no claim,
        no send."""
        skip = set(job.sent_ahead)
        limit = request.limit - job.sent + len(skip) if request.limit else None
        sources = job.plan.get("rejected_sources")
        stats = PlanStats()
        stream = self._planner.messages(
            request.spec(),
            stats,
            cursor=decode_cursor(job.cursor),
            limit=limit,
            rejected_sources=sources,
        )
        remaining = sum(1 for m in stream if m.key not in skip)
        return replace(job, matched=remaining, scanned=stats.scanned)

    # -- planning -------------------------------------------------------------------------------
    def _is_dry(self, request: ReplayRequest) -> bool:
        return request.dry_run or self.dry_run

    def _draft(self, request: ReplayRequest, requester: str) -> _Draft:
        target = self._targets(request.target)
        now = self._now()
        replay_id = f"{REPLAY_ID_PREFIX}-{self._clock.now():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        job = ReplayJob(
            replay_id=replay_id,
            status=JobStatus.PLANNED,
            requester=requester,
            request=request.to_json(),
            target=target.description,
            created_at=now,
            updated_at=now,
        )
        stats = PlanStats()
        stream = self._planner.messages(request.spec(), stats, limit=request.limit)
        return _Draft(job, request, target, stats, PlanSummary(), stream)

    def _planned(self, draft: _Draft) -> ReplayJob:
        request = draft.request
        sources: list[str] = []
        if request.include_rejected and request.min_lag_ms is None:
            sources = self._planner.rejected_sources(request.spec(), draft.stats.sources_seen)
        plan = draft.summary.to_json(draft.stats, sources)
        if not draft.complete:
            plan["planning"] = True  # the counts grow until planning is done
        return replace(
            draft.job, scanned=draft.stats.scanned, matched=draft.summary.matched, plan=plan
        )

    def _dry_answer(self, draft: _Draft, job: ReplayJob) -> Started:
        draft.target.close()
        if job.matched == 0:
            job.signal = self._signal(draft.request, job)
        return Started(job, True)

    def _sendable(
        self,
        draft: _Draft,
        run: _Run,
        *,
        cursor: Position | None = None,
        limit: int | None = None,
        sources: Sequence[str] | None = None,
    ) -> Iterable[PlannedMessage]:
        if draft.kept is not None:
            return draft.kept
        # Too big to hold: read it again while sending (``scanned`` counts both reads).
        run.reading = PlanStats()
        return self._planner.messages(
            draft.request.spec(), run.reading, cursor=cursor, limit=limit, rejected_sources=sources
        )

    # -- running --------------------------------------------------------------------------------
    def _run_new(
        self,
        draft: _Draft,
        job: ReplayJob,
        progress: ProgressCallback | None,
        should_stop: StopCheck | None,
    ) -> ReplayJob:
        runner = uuid.uuid4().hex
        now = self._now()
        job = replace(job, status=JobStatus.RUNNING, runner=runner, started_at=now, updated_at=now)
        try:
            self.jobs.create(job)
        except BaseException:
            draft.target.close()
            raise
        return self._run(draft, job, runner, progress, should_stop)

    def _run_rest(self, draft: _Draft, job: ReplayJob, should_stop: StopCheck | None) -> ReplayJob:
        """Claim a recorded PLANNED job, read the rest of its plan, and send it."""
        runner = uuid.uuid4().hex
        try:
            claimed = self.jobs.claim(
                job.replay_id, runner, self._now(), stale_before=self._stale_before()
            )
        except JobConflict as exc:  # cancelled while it waited
            draft.target.close()
            return exc.job
        try:
            draft.read(self._max_planned)
        except Exception as exc:
            log.exception("replay planning failed", extra={"replay_id": job.replay_id})
            run = _Run(claimed, runner, draft.stats.scanned, draft.summary.matched, 0, None, {})
            run.stop_status, run.stop_reason = JobStatus.FAILED, f"{type(exc).__name__}: {exc}"
            return self._finish(run, draft.request)
        planned = self._planned(draft)
        job = replace(claimed, scanned=planned.scanned, matched=planned.matched, plan=planned.plan)
        return self._run(draft, job, runner, None, should_stop)

    def _run(
        self,
        draft: _Draft,
        job: ReplayJob,
        runner: str,
        progress: ProgressCallback | None,
        should_stop: StopCheck | None,
    ) -> ReplayJob:
        run = _Run(
            job=job,
            runner=runner,
            scanned=job.scanned,
            matched=job.matched,
            sent=0,
            cursor=None,
            plan=dict(job.plan),
        )
        messages = self._sendable(
            draft, run, limit=draft.request.limit, sources=job.plan.get("rejected_sources")
        )
        return self._execute(run, draft.request, messages, draft.target, progress, should_stop)

    def _execute(
        self,
        run: _Run,
        request: ReplayRequest,
        messages: Iterable[PlannedMessage],
        target: ReplayTarget,
        progress: ProgressCallback | None,
        should_stop: StopCheck | None,
    ) -> ReplayJob:
        pacer = Pacer(request.rate_limit, self._monotonic, self._sleep)
        batch_limit = None
        if request.rate_limit is not None:
            batch_limit = max(1, min(target.max_batch_messages, int(request.rate_limit)))
        reader = ArchiveReader(self._archive, cached_files=64) if request.with_payload else None
        checkpoint = Checkpoints(self._checkpoint_every, self._checkpoint_seconds, self._monotonic)
        if progress is not None:
            progress(run.sent, run.matched)
        try:
            for chunk in chunks(messages, max(target.max_batch_messages, 100)):
                self._send_chunk(
                    run,
                    chunk,
                    target,
                    reader,
                    pacer,
                    batch_limit,
                    checkpoint,
                    should_stop,
                    progress,
                )
                if run.stop_status is not None:
                    break
        except Exception as exc:  # recorded on the job, which can be resumed
            log.exception("replay failed", extra={"replay_id": run.job.replay_id})
            run.stop_status, run.stop_reason = JobStatus.FAILED, f"{type(exc).__name__}: {exc}"
        except BaseException:  # Ctrl-C, SystemExit: record where we are, then let it go
            run.stop_status, run.stop_reason = JobStatus.FAILED, "interrupted"
            self._finish(run, request)
            raise
        finally:
            target.close()
        return self._finish(run, request)

    def _send_chunk(
        self,
        run: _Run,
        chunk: list[PlannedMessage],
        target: ReplayTarget,
        reader: ArchiveReader | None,
        pacer: Pacer,
        batch_limit: int | None,
        checkpoint: Checkpoints,
        should_stop: StopCheck | None,
        progress: ProgressCallback | None,
    ) -> None:
        """Send one chunk batch by batch, moving the cursor over what is known sent."""
        replay_id = run.job.replay_id
        records = self._records(reader, chunk) if reader is not None else {}
        by_key = {m.key: m for m in chunk}
        omitted: set[str] = set()  # too large with their payload: sent pointer-only
        outgoing: list[TargetMessage] = []
        for m in chunk:
            if m.key in run.skip:
                continue
            body = message_body(replay_id, m, records.get(m.key))
            if m.key in records and len(body.encode("utf-8")) > target.max_message_bytes:
                body = message_body(replay_id, m, payload_omitted=PAYLOAD_TOO_LARGE)
                omitted.add(m.key)
            outgoing.append(
                TargetMessage(
                    key=m.key,
                    body=body,
                    group=message_group_id(m.entity_id),
                    dedup_id=fifo_dedup_id(replay_id, m.key),
                )
            )
        done = 0  # chunk[:done] are all sent

        def advance() -> None:
            nonlocal done
            while done < len(chunk) and (
                chunk[done].key in run.ahead or chunk[done].key in run.skip
            ):
                run.ahead.discard(chunk[done].key)
                run.skip.discard(chunk[done].key)
                run.cursor = chunk[done].position
                done += 1

        advance()
        for batch in target.batches(outgoing, batch_limit):
            if should_stop is not None and should_stop():
                run.stop_status, run.stop_reason = JobStatus.FAILED, "interrupted"
                return
            pacer.wait(len(batch))
            if self._cancelled(run, paced=pacer.paced):
                return
            outcome = target.send_batch(batch)
            run.ahead.update(outcome.sent)
            run.sent += len(outcome.sent)
            run.payload_omitted += sum(1 for k in outcome.sent if k in omitted)
            if self._log is not None:
                sent_at = self._now()
                run.unlogged += [_log_entry(by_key[k], sent_at) for k in outcome.sent]
            self._count([by_key[k] for k in outcome.sent])
            advance()
            if progress is not None:
                progress(run.sent, run.matched)
            if outcome.failed:
                key, why = next(iter(outcome.failed.items()))
                run.failed = len(outcome.failed)
                run.stop_status = JobStatus.FAILED
                run.stop_reason = (
                    f"{run.failed} message(s) not accepted by {target.description}; "
                    f"first {key}: {why}"
                )
                return
            if checkpoint.due(len(outcome.sent)) and not self._checkpoint(run):
                return

    def _cancelled(self, run: _Run, *, paced: bool) -> bool:
        """Read the job's status when due (a paced run: every ``status_check_seconds``; one at
        full speed: every ``UNPACED_CHECK_BATCHES`` batches or ``UNPACED_CHECK_SECONDS``):
        True when it was cancelled, so the run stops before its next batch. The first batch
        goes without one: a job cancelled before it started is not claimed."""
        now = self._monotonic()
        if run.status_checked is None:
            run.status_checked = now
            return False
        run.batches_unchecked += 1
        waited = now - run.status_checked
        if paced:
            due = waited >= self._status_check_seconds
        else:
            due = run.batches_unchecked >= UNPACED_CHECK_BATCHES or waited >= max(
                UNPACED_CHECK_SECONDS, self._status_check_seconds
            )
        if not due:
            return False
        run.status_checked, run.batches_unchecked = now, 0
        if self.jobs.status(run.job.replay_id) is not JobStatus.CANCELLED:
            return False
        run.stop_status, run.stop_reason = JobStatus.CANCELLED, "cancelled"
        return True

    def _checkpoint(self, run: _Run) -> bool:
        """Write progress; False when the job must stop (cancelled, or taken by another)."""
        self._write_log(run)  # first: every message before a recorded cursor is in the log
        try:
            job = self.jobs.checkpoint(run.job.replay_id, run.runner, run.progress(), self._now())
        except JobConflict as exc:
            run.job, run.taken_over = exc.job, True
            run.stop_status, run.stop_reason = exc.job.status, "taken over by another runner"
            return False
        run.job = job
        if job.status is JobStatus.CANCELLED:
            run.stop_status, run.stop_reason = JobStatus.CANCELLED, job.reason
            return False
        return True

    def _finish(self, run: _Run, request: ReplayRequest) -> ReplayJob:
        if run.taken_over:
            return run.job
        status = run.stop_status or JobStatus.COMPLETED
        signal = None
        if run.sent == 0 and status is JobStatus.COMPLETED:
            signal = self._signal(request, run.job, run)
        progress = run.progress()
        try:
            self._write_log(run)
        except KitError as exc:  # as if it crashed before this checkpoint: resume re-sends
            log.exception("replay sent log not written", extra={"replay_id": run.job.replay_id})
            progress = run.logged_progress()
            status, run.stop_reason = JobStatus.FAILED, f"sent log not written: {exc}"
        try:
            return self.jobs.finish(
                run.job.replay_id,
                run.runner,
                status,
                progress,
                self._now(),
                reason=run.stop_reason,
                signal=signal,
            )
        except JobConflict as exc:  # another runner took the job over: its record wins
            return exc.job

    def _write_log(self, run: _Run) -> None:
        if self._log is None or not run.unlogged:
            return
        first = run.sent - len(run.unlogged)  # the job's count of sent messages before these
        self._log.append(run.job.replay_id, first, run.runner, run.unlogged)
        run.unlogged = []
        run.logged_cursor = run.cursor

    @staticmethod
    def _records(
        reader: ArchiveReader, chunk: Sequence[PlannedMessage]
    ) -> dict[str, ArchiveRecord]:
        """Archived records of a chunk, file by file: one read per archive file."""
        ordered = sorted(chunk, key=lambda m: (m.pointer.bucket, m.pointer.key))
        return {m.key: reader.read(m.pointer) for m in ordered}

    def _count(self, messages: Sequence[PlannedMessage]) -> None:
        counts = Counter((m.source, m.event_type) for m in messages)
        for (source, event_type), n in counts.items():
            self._metrics.incr(METRIC_MESSAGES, n, source=source, event_type=event_type)

    # -- sent = 0 ---------------------------------------------------------------------------------
    def _signal(
        self, request: ReplayRequest, job: ReplayJob, run: _Run | None = None
    ) -> dict[str, Any]:
        """Why nothing was (or would be) sent: nothing matched, all duplicates, all rejected."""
        window = f"[{iso(request.start_time)}, {iso(request.end_time)})"
        found, scanned = self._probe(request)
        if run is not None:
            run.scanned += scanned
        else:
            job.scanned += scanned
        dups, rejected = found[Status.DUPLICATE.value], found[Status.REJECTED.value]
        if not dups and not rejected:
            return {
                "reason": "nothing_matched",
                "detail": f"no event in the index matches the selection in {window}",
            }
        reason = "all_duplicates_or_rejected"
        if not rejected:
            reason = "all_duplicates"
        elif not dups:
            reason = "all_rejected"
        parts = []
        if dups:
            parts.append(f"{dups} duplicate deliveries whose first copies are outside it")
        if rejected:
            parts.append(f"{rejected} rejected deliveries (include_rejected replays them)")
        return {
            "reason": reason,
            "detail": f"the selection holds only {' and '.join(parts)}, ingested in {window}",
        }

    def _probe(self, request: ReplayRequest) -> tuple[Counter[str], int]:
        """Duplicate and rejected deliveries the selection did not send, read by ingest day (a
        few pages at most) under the requested source, or ``_unknown`` without one."""
        statuses = [Status.DUPLICATE.value]
        if not request.include_rejected:
            statuses.append(Status.REJECTED.value)
        sel = request.selection()
        low, high = format_time(sel.start), format_time(sel.end)
        found: Counter[str] = Counter()
        scanned = 0
        for day in sel.days()[:MAX_WINDOW_DAYS]:
            pages = self._queries.deliveries(
                f"{sel.source or UNKNOWN_SOURCE}#{day}",
                low,
                high,
                statuses=statuses,
                entity_id=sel.entity_id,
                event_type=sel.event_type,
            )
            for page in islice(pages, PROBE_MAX_PAGES):
                scanned += page.scanned
                found.update(
                    str(item["status"])
                    for item in page.items
                    if item["status"] != Status.DUPLICATE.value  # those by event time too
                    or low <= str(item.get("event_time", "")) < high
                )
        return found, scanned

    def _now(self) -> str:
        return format_time(self._clock.now())

    def _stale_before(self) -> str:
        return format_time(self._clock.now() - self._stale_after)
