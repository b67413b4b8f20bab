"""What happened to an event after ingest (``StoreLineage``, an ``EventLineage`` for ``explain``).

* **Replays that re-emitted it.** The most recent replay jobs (``MAX_REPLAYS_SEARCHED``) whose
  request could have selected the event (same entity, source and event type where the request
  names one, event time in its window) are candidates; each candidate's sent log
  (``infra.replay_log``) says whether, when and how often it really sent the event or one of
  its duplicate or rejected deliveries. Dry runs send nothing and are never listed.
* **Aggregate versions that included it.** The processor keeps versions per (entity, day of
  event time, metric) with their exact input lists; the versions of the event's entity and day
  whose inputs hold the event id are listed, each with whether it is still the latest.

Both read only the jobs table (one Query), the candidates' logs, and the aggregates table (one
Query) with the input lists it points to — never a Scan.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from infra.aggregates import Aggregates, AggregateVersion
from infra.errors import NotFound, ResourceMissing
from infra.replay_jobs import ReplayJob, ReplayJobs
from infra.replay_log import ReplayLog
from schemas.envelope import format_time, parse_time

__all__ = [
    "MAX_REPLAYS_SEARCHED",
    "MAX_VERSIONS_READ",
    "StoreLineage",
    "could_select",
]

MAX_REPLAYS_SEARCHED = 200
MAX_VERSIONS_READ = 500


def _time(value: Any) -> datetime | None:
    try:
        return parse_time(str(value)) if value else None
    except ValueError:
        return None


def could_select(request: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """False only when the request cannot have selected the event or one of its deliveries
    (the sent log decides the rest)."""
    for field in ("entity_id", "source", "event_type"):
        wanted, have = request.get(field), event.get(field)
        if wanted is not None and have is not None and wanted != have:
            return False
    if request.get("include_rejected"):
        return True  # rejected deliveries are windowed by ingest time: leave it to the log
    when, start, end = (
        _time(event.get("event_time")),
        _time(request.get("start_time")),
        _time(request.get("end_time")),
    )
    if when is None or start is None or end is None:
        return True
    return start <= when < end


def _replay_row(job: ReplayJob, entries: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
    times = sorted(str(e.get("sent_at")) for e in entries)
    return {
        "replay_id": job.replay_id,
        "status": job.status.value,
        "requester": job.requester,
        "target": job.target,
        "created_at": job.created_at,
        "sent": len(entries),
        "first_sent_at": times[0] if times else None,
        "last_sent_at": times[-1] if times else None,
        "deliveries": sorted({str(e.get("key")) for e in entries}),
        "log_complete": complete,
        "request": job.request,
    }


def _version_row(v: AggregateVersion, latest: int) -> dict[str, Any]:
    return {
        "metric": v.metric,
        "day": v.day,
        "version": v.version,
        "value": v.value,
        "previous_value": v.previous_value,
        "input_count": v.input_count,
        "input_hash": v.input_hash,
        "computed_at": v.computed_at,
        "replay_id": v.replay_id,
        "latest_version": latest,
        "is_latest": v.version == latest,
    }


class StoreLineage:
    def __init__(
        self, jobs: ReplayJobs, log: ReplayLog, aggregates: Aggregates | None = None
    ) -> None:
        self._jobs = jobs
        self._log = log
        self._aggregates = aggregates

    def replays(self, event: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        event_id = str(event["event_id"])
        try:
            jobs = self._jobs.recent(MAX_REPLAYS_SEARCHED)
        except ResourceMissing:
            return None  # no jobs table: replay was never set up here
        rows = []
        for job in reversed(jobs):  # oldest first
            if job.sent <= 0 or not could_select(job.request, event):
                continue
            entries, complete = self._log.sent(job.replay_id, event_id)
            if entries or not complete:
                rows.append(_replay_row(job, entries, complete))
        return sorted(rows, key=lambda r: r["first_sent_at"] or "")

    def aggregate_versions(self, event: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        if self._aggregates is None:
            return None
        event_id, entity_id = str(event["event_id"]), event.get("entity_id")
        when = _time(event.get("event_time"))
        if entity_id is None or when is None:
            return []  # the processor aggregates only events with an entity and a time
        try:
            versions = self._aggregates.versions(str(entity_id), format_time(when)[:10])
        except ResourceMissing:
            return None
        versions = versions[-MAX_VERSIONS_READ:]
        latest: dict[str, int] = {}
        for v in versions:
            latest[v.metric] = max(latest.get(v.metric, 0), v.version)
        rows = []
        for v in versions:
            try:
                included = event_id in v.sample_event_ids or event_id in self._aggregates.inputs(v)
            except NotFound:
                included = False
            if included:
                rows.append(_version_row(v, latest[v.metric]))
        return rows
