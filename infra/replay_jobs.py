"""Replay jobs (``ReplayJobs``): the record of every replay, and its state machine.

A job holds the request, who asked, the target, timestamps, status, counts and a progress
cursor. Every state change is a conditional write, so two processes can never both run a job,
a cancelled job stays cancelled, and a runner that lost its job notices at its next write::

    PLANNED ──claim──> RUNNING ──finish──> COMPLETED
       │                │   ▲  └──finish──> FAILED ──claim (resume)──┘
       └──cancel──> CANCELLED <──cancel── (PLANNED, RUNNING, FAILED)

A RUNNING job is owned by one runner token; ``checkpoint`` and ``finish`` only succeed for
that token. A RUNNING job whose owner stopped writing (``updated_at`` older than the stale limit)
can be claimed again, or at once with ``force``.

The base class holds that logic; the DynamoDB and in-memory adapters implement four small
methods (``_put_new``, ``_get``, ``_update``, ``_recent``). Errors::

    KitError ── NotFound ── (no such replay)
             └─ JobConflict  a condition failed; carries the job as it is now
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from enum import StrEnum
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from infra.dynamo import dynamo_errors
from infra.errors import ConditionFailed, KitError, NotFound

__all__ = [
    "JOB_KIND",
    "DynamoReplayJobs",
    "Expect",
    "JobConflict",
    "JobStatus",
    "MemoryReplayJobs",
    "Progress",
    "ReplayJob",
    "ReplayJobs",
]

JOB_KIND = "replay"  # the partition key of the ``by_created`` index: every job is listed
INDEX_BY_CREATED = "by_created"
DEFAULT_LIST_LIMIT = 20


class JobStatus(StrEnum):
    PLANNED = "PLANNED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"


RESUMABLE = frozenset({JobStatus.PLANNED, JobStatus.FAILED})
CANCELLABLE = frozenset({JobStatus.PLANNED, JobStatus.RUNNING, JobStatus.FAILED})


@dataclass(slots=True)
class ReplayJob:
    replay_id: str
    status: JobStatus
    requester: str
    request: dict[str, Any]
    target: str
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    updated_at: str | None = None
    reason: str | None = None
    scanned: int = 0
    matched: int = 0
    sent: int = 0
    failed: int = 0
    payload_omitted: int = 0  # sent pointer-only: the payload was over the target's limit
    cursor: str | None = None  # JSON text: the position of the last message known sent
    sent_ahead: list[str] = field(default_factory=list)  # keys sent past the cursor
    runner: str | None = None
    stopped_at: str | None = None  # when the runner last stopped (a cancel waits for it)
    plan: dict[str, Any] = field(default_factory=dict)
    signal: dict[str, Any] | None = None

    def to_item(self) -> dict[str, Any]:
        item = {f.name: getattr(self, f.name) for f in fields(self)}
        item["status"] = self.status.value
        item["kind"] = JOB_KIND
        return {k: v for k, v in item.items() if v is not None}

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> ReplayJob:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in item.items() if k in known}
        values["status"] = JobStatus(values["status"])
        values["sent_ahead"] = list(values.get("sent_ahead") or [])
        return cls(**values)

    @property
    def finished(self) -> bool:
        return self.status in (JobStatus.COMPLETED, JobStatus.CANCELLED)


@dataclass(frozen=True, slots=True)
class Progress:
    """What a runner reports at a checkpoint."""

    scanned: int
    matched: int
    sent: int
    failed: int
    cursor: str | None
    sent_ahead: tuple[str, ...] = ()
    plan: Mapping[str, Any] | None = None
    payload_omitted: int = 0

    def changes(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "scanned": self.scanned,
            "matched": self.matched,
            "sent": self.sent,
            "failed": self.failed,
            "payload_omitted": self.payload_omitted,
            "cursor": self.cursor,
            "sent_ahead": list(self.sent_ahead),
        }
        if self.plan is not None:
            out["plan"] = dict(self.plan)
        return out


@dataclass(frozen=True, slots=True)
class Expect:
    """The condition of a write: the job exists and

    * its status is one of ``statuses`` (any status when empty), or it is RUNNING with
      ``updated_at`` before ``stale_before`` (its runner stopped writing);
    * its runner is ``runner`` (when given).
    """

    statuses: frozenset[JobStatus] = frozenset()
    runner: str | None = None
    stale_before: str | None = None

    def holds(self, job: ReplayJob) -> bool:
        status_ok = not self.statuses or job.status in self.statuses
        if not status_ok and self.stale_before is not None and job.status is JobStatus.RUNNING:
            status_ok = (job.updated_at or "") < self.stale_before
        return status_ok and (self.runner is None or job.runner == self.runner)

    def dynamo(self) -> tuple[str, dict[str, str], dict[str, Any]]:
        clauses = ["attribute_exists(replay_id)"]
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        if self.statuses:
            names["#status"] = "status"
            keys = []
            for i, status in enumerate(sorted(self.statuses)):
                values[f":st{i}"] = {"S": status.value}
                keys.append(f":st{i}")
            status_clause = f"#status IN ({', '.join(keys)})"
            if self.stale_before is not None:
                names["#updated"] = "updated_at"
                values[":running"] = {"S": JobStatus.RUNNING.value}
                values[":stale"] = {"S": self.stale_before}
                status_clause = f"({status_clause} OR (#status = :running AND #updated < :stale))"
            clauses.append(status_clause)
        if self.runner is not None:
            names["#runner"] = "runner"
            values[":runner"] = {"S": self.runner}
            clauses.append("#runner = :runner")
        return " AND ".join(clauses), names, values


class JobConflict(KitError):
    """A job was not in the state a write expected; ``job`` is how it is now."""

    def __init__(self, message: str, job: ReplayJob) -> None:
        super().__init__(message)
        self.job = job


class ReplayJobs(ABC):
    # -- what a backend implements -----------------------------------------------------------
    @abstractmethod
    def _put_new(self, job: ReplayJob) -> None:
        """Store a new job; JobConflict if the id is taken."""

    @abstractmethod
    def _get(self, replay_id: str) -> ReplayJob | None: ...

    @abstractmethod
    def _update(self, replay_id: str, changes: Mapping[str, Any], expect: Expect) -> ReplayJob:
        """Apply ``changes`` (a None value removes the field) if ``expect`` holds; return the
        job after the write. NotFound if there is no job, JobConflict if ``expect`` failed."""

    @abstractmethod
    def _recent(self, limit: int) -> list[ReplayJob]:
        """Newest first."""

    # -- the state machine -------------------------------------------------------------------
    def create(self, job: ReplayJob) -> ReplayJob:
        self._put_new(job)
        return job

    def get(self, replay_id: str) -> ReplayJob:
        job = self._get(replay_id)
        if job is None:
            raise NotFound(f"no replay {replay_id}")
        return job

    def recent(self, limit: int = DEFAULT_LIST_LIMIT) -> list[ReplayJob]:
        return self._recent(limit)

    def status(self, replay_id: str) -> JobStatus:
        """The job's status alone: what a runner reads between batches to notice a cancel."""
        return self.get(replay_id).status

    def claim(
        self, replay_id: str, runner: str, now: str, *, stale_before: str, force: bool = False
    ) -> ReplayJob:
        """PLANNED or FAILED (or abandoned RUNNING; any RUNNING with ``force``) → RUNNING."""
        statuses = RESUMABLE | ({JobStatus.RUNNING} if force else set())
        current = self.get(replay_id)
        changes: dict[str, Any] = {
            "status": JobStatus.RUNNING.value,
            "runner": runner,
            "updated_at": now,
            "reason": None,
            "finished_at": None,
            "stopped_at": None,
        }
        if current.started_at is None:
            changes["started_at"] = now
        return self._update(
            replay_id, changes, Expect(frozenset(statuses), stale_before=stale_before)
        )

    def checkpoint(self, replay_id: str, runner: str, progress: Progress, now: str) -> ReplayJob:
        """Record progress; the answer's status tells the runner whether to go on (a CANCELLED
        job still takes its runner's counts). JobConflict: another runner owns the job now."""
        return self._update(
            replay_id, {**progress.changes(), "updated_at": now}, Expect(runner=runner)
        )

    def finish(
        self,
        replay_id: str,
        runner: str,
        status: JobStatus,
        progress: Progress,
        now: str,
        *,
        reason: str | None = None,
        signal: Mapping[str, Any] | None = None,
    ) -> ReplayJob:
        """RUNNING → ``status`` with the final counts. A job cancelled meanwhile stays CANCELLED
        (its counts are still recorded)."""
        changes: dict[str, Any] = {
            **progress.changes(),
            "updated_at": now,
            "stopped_at": now,
            "signal": dict(signal) if signal else None,
        }
        final = {"status": status.value, "finished_at": now, "reason": reason}
        try:
            return self._update(
                replay_id,
                {**changes, **final},
                Expect(frozenset({JobStatus.RUNNING}), runner=runner),
            )
        except JobConflict as exc:
            if exc.job.runner != runner or exc.job.status is not JobStatus.CANCELLED:
                raise
            return self._update(replay_id, changes, Expect(runner=runner))

    def cancel(self, replay_id: str, now: str, reason: str = "cancelled") -> ReplayJob:
        return self._update(
            replay_id,
            {
                "status": JobStatus.CANCELLED.value,
                "finished_at": now,
                "updated_at": now,
                "reason": reason,
            },
            Expect(CANCELLABLE),
        )


# -- DynamoDB -------------------------------------------------------------------------------------
def _to_dynamo_value(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _to_dynamo_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_to_dynamo_value(v) for v in value]
    return value


def _from_dynamo_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo_value(v) for v in value]
    return value


class DynamoReplayJobs(ReplayJobs):
    def __init__(self, dynamodb_client: Any, table: str) -> None:
        self._ddb = dynamodb_client
        self.table = table
        self._ser = TypeSerializer()
        self._de = TypeDeserializer()

    def _dump(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self._ser.serialize(_to_dynamo_value(v)) for k, v in item.items()}

    def _load(self, raw: Mapping[str, Any]) -> ReplayJob:
        item = {k: _from_dynamo_value(self._de.deserialize(v)) for k, v in raw.items()}
        return ReplayJob.from_item(item)

    def _put_new(self, job: ReplayJob) -> None:
        try:
            with dynamo_errors(self.table, "PutItem"):
                self._ddb.put_item(
                    TableName=self.table,
                    Item=self._dump(job.to_item()),
                    ConditionExpression="attribute_not_exists(replay_id)",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
        except ConditionFailed as exc:
            raise JobConflict(
                f"replay {job.replay_id} exists already", self._load(exc.item) if exc.item else job
            ) from exc

    def _get(self, replay_id: str) -> ReplayJob | None:
        with dynamo_errors(self.table, "GetItem"):
            out = self._ddb.get_item(
                TableName=self.table, Key={"replay_id": {"S": replay_id}}, ConsistentRead=True
            )
        return self._load(out["Item"]) if "Item" in out else None

    def status(self, replay_id: str) -> JobStatus:
        with dynamo_errors(self.table, "GetItem"):
            out = self._ddb.get_item(
                TableName=self.table,
                Key={"replay_id": {"S": replay_id}},
                ProjectionExpression="#s",
                ExpressionAttributeNames={"#s": "status"},
                ConsistentRead=True,
            )
        if "Item" not in out:
            raise NotFound(f"no replay {replay_id}")
        return JobStatus(out["Item"]["status"]["S"])

    def _update(self, replay_id: str, changes: Mapping[str, Any], expect: Expect) -> ReplayJob:
        condition, names, values = expect.dynamo()
        sets: list[str] = []
        removes: list[str] = []
        for i, (name, value) in enumerate(changes.items()):
            names[f"#f{i}"] = name
            if value is None:
                removes.append(f"#f{i}")
            else:
                values[f":f{i}"] = self._ser.serialize(_to_dynamo_value(value))
                sets.append(f"#f{i} = :f{i}")
        expression = " ".join(
            part
            for part in (
                "SET " + ", ".join(sets) if sets else "",
                "REMOVE " + ", ".join(removes) if removes else "",
            )
            if part
        )
        kwargs: dict[str, Any] = {"ExpressionAttributeNames": names}
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            with dynamo_errors(self.table, "UpdateItem"):
                out = self._ddb.update_item(
                    TableName=self.table,
                    Key={"replay_id": {"S": replay_id}},
                    UpdateExpression=expression,
                    ConditionExpression=condition,
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    **kwargs,
                )
        except ConditionFailed as exc:
            old_item = exc.item
            if not old_item:
                old_job = self._get(replay_id)
                if old_job is None:
                    raise NotFound(f"no replay {replay_id}") from exc
            else:
                old_job = self._load(old_item)
            raise JobConflict(
                f"replay {replay_id} is {old_job.status.value}"
                + (f" (runner {old_job.runner})" if expect.runner else ""),
                old_job,
            ) from exc
        return self._load(out["Attributes"])

    def _recent(self, limit: int) -> list[ReplayJob]:
        with dynamo_errors(self.table, "Query"):
            out = self._ddb.query(
                TableName=self.table,
                IndexName=INDEX_BY_CREATED,
                KeyConditionExpression="#k = :k",
                ExpressionAttributeNames={"#k": "kind"},
                ExpressionAttributeValues={":k": {"S": JOB_KIND}},
                ScanIndexForward=False,
                Limit=limit,
            )
        return [self._load(item) for item in out.get("Items", [])]


# -- memory ---------------------------------------------------------------------------------------
class MemoryReplayJobs(ReplayJobs):
    """In-memory jobs with the same conditions, for unit tests. Jobs are stored as JSON text, so
    nothing a caller holds aliases the stored state."""

    def __init__(self) -> None:
        self._jobs: dict[str, str] = {}
        self._lock = threading.Lock()

    def _put_new(self, job: ReplayJob) -> None:
        with self._lock:
            if job.replay_id in self._jobs:
                raise JobConflict(
                    f"replay {job.replay_id} exists already",
                    ReplayJob.from_item(json.loads(self._jobs[job.replay_id])),
                )
            self._jobs[job.replay_id] = json.dumps(job.to_item())

    def _get(self, replay_id: str) -> ReplayJob | None:
        with self._lock:
            text = self._jobs.get(replay_id)
        return ReplayJob.from_item(json.loads(text)) if text else None

    def _update(self, replay_id: str, changes: Mapping[str, Any], expect: Expect) -> ReplayJob:
        with self._lock:
            text = self._jobs.get(replay_id)
            if text is None:
                raise NotFound(f"no replay {replay_id}")
            item = json.loads(text)
            job = ReplayJob.from_item(item)
            if not expect.holds(job):
                raise JobConflict(f"replay {replay_id} is {job.status.value}", job)
            for name, value in changes.items():
                if value is None:
                    item.pop(name, None)
                else:
                    item[name] = value
            self._jobs[replay_id] = json.dumps(item)
            return ReplayJob.from_item(item)

    def _recent(self, limit: int) -> list[ReplayJob]:
        with self._lock:
            items = [json.loads(t) for t in self._jobs.values()]
        items.sort(key=lambda i: i["created_at"], reverse=True)
        return [ReplayJob.from_item(i) for i in items[:limit]]
