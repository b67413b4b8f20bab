"""The ingest sink: the one path from received bytes to archived, indexed truth.

Both the HTTP API and the Kinesis tap feed it batches of ``Submission``. For a batch it

1. validates and identifies every record (a rejection is data with a reason, not an exception);
2. claims each new identity in the index (conditional writes: one winner per identity);
3. writes the archive: one Avro file per partition of the batch, ``If-None-Match: *``;
4. commits the claims with their archive pointers, records duplicate and rejected occurrences.

Only then are results returned, so an answer means "archived and indexed". A crash anywhere
leaves claims ``PENDING``; the same delivery retried re-claims them, and a different delivery
takes over a claim once it is older than ``stale_after``. Redelivery (the same occurrence again,
after it was committed) is absorbed: no second index item, no duplicate count.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from infra.archive import ArchivePointer, RawArchive
from infra.clock import Clock
from infra.index import STATE_PENDING, Claim, Commit, EventIndex, Holder, Occurrence
from infra.keys import archive_key
from infra.metrics import Metrics
from schemas.codec import ArchiveRecord, Provenance, encode_archive
from schemas.envelope import Event, Rejection, Status
from schemas.identity import canonical_json, event_id, rejected_event_id

log = logging.getLogger(__name__)

DEFAULT_STALE_AFTER = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class Submission:
    """One received record: its exact bytes, where it came from, and what it parsed to."""

    raw: bytes
    provenance: Provenance
    parsed: Event | Rejection
    position: str  # its place in the batch, used in archive file names ("17", "4961.0")
    schema_fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class IngestResult:
    status: Status
    event_id: str
    occurrence_id: str
    lag_ms: int | None = None
    reason: str | None = None
    detail: str | None = None
    archive: ArchivePointer | None = None
    redelivery: bool = False
    first_occurrence: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status.value, "event_id": self.event_id}
        if self.status is Status.REJECTED:
            out["reason"] = self.reason
            out["detail"] = self.detail
        else:
            out["ingest_lag_ms"] = self.lag_ms
        if self.redelivery:
            out["redelivery"] = True
        if self.archive is not None:
            out["archive"] = self.archive.to_json()
        return out


@dataclass(slots=True)
class _Row:
    """Working state of one submission inside a batch."""

    sub: Submission
    event_id: str
    status: Status
    lag_ms: int | None = None
    pointer: ArchivePointer | None = None
    redelivery: bool = False
    first_occurrence: str | None = None


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """What a batch wrote (or, in a dry run, would have written)."""

    files: dict[str, int] = field(default_factory=dict)  # key → record count
    index_items: int = 0


class IngestSink:
    def __init__(
        self,
        archive: RawArchive,
        index: EventIndex,
        clock: Clock,
        metrics: Metrics,
        *,
        dry_run: bool = False,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
    ) -> None:
        self._archive = archive
        self._index = index
        self._clock = clock
        self._metrics = metrics
        self.dry_run = dry_run
        self._stale_after = stale_after
        self.last_plan = BatchPlan()

    def ingest(
        self, batch: Sequence[Submission], *, label: str, at: datetime | None = None
    ) -> list[IngestResult]:
        """Make ``batch`` durable and say what each record became, in order.

        ``label`` names the batch in archive file names; with ``at`` (the batch's time for key
        partitions) a caller that re-runs the same batch writes the same file names.
        """
        if not batch:
            return []
        ingest_time = self._clock.now()
        rows = [self._identify(sub, ingest_time) for sub in batch]
        claims = self._first_claims(rows, ingest_time)
        holders = self._claim(list(claims.values()), ingest_time)
        reclaim = self._settle(rows, holders)
        if reclaim:  # our own earlier delivery left a PENDING claim: finish it with that row
            retry = {eid: self._claim_for(row, ingest_time) for eid, row in reclaim.items()}
            lost = self._claim(list(retry.values()), ingest_time)
            self._settle(rows, lost)
            for eid, row in reclaim.items():
                if eid not in lost:
                    self._make_claimant(rows, row)
        files = self._layout(rows, label, at or ingest_time)
        records = {
            key: [self._record(row, ingest_time) for row in members]
            for key, members in files.items()
        }
        plan = BatchPlan(
            files={key: len(members) for key, members in files.items()},
            index_items=sum(1 for r in rows if not r.redelivery),
        )
        if not self.dry_run:
            for key, recs in records.items():
                if not self._archive.put_file(key, encode_archive(recs)):
                    log.info("archive file already present", extra={"key": key})
            self._index_batch(rows, claims, ingest_time)
        self.last_plan = plan
        self._count(rows)
        return [self._result(row) for row in rows]

    # -- steps -----------------------------------------------------------------------------
    def _identify(self, sub: Submission, ingest_time: datetime) -> _Row:
        parsed = sub.parsed
        if isinstance(parsed, Rejection):
            return _Row(sub, rejected_event_id(sub.raw), Status.REJECTED)
        lag = (ingest_time - parsed.event_time) // timedelta(milliseconds=1)
        return _Row(sub, event_id(parsed), Status.ACCEPTED, lag_ms=lag)

    def _claim(self, claims: list[Claim], ingest_time: datetime) -> dict[str, Holder]:
        if not claims:
            return {}
        if self.dry_run:
            return self._index.lookup([c.event_id for c in claims])
        return self._index.claim(claims, ingest_time - self._stale_after)

    @staticmethod
    def _claim_for(row: _Row, ingest_time: datetime) -> Claim:
        event = row.sub.parsed
        assert isinstance(event, Event)
        return Claim(
            event_id=row.event_id,
            occurrence_id=row.sub.provenance.occurrence_id,
            source=event.source,
            event_type=event.event_type,
            entity_id=event.entity_id,
            event_time=event.event_time,
            ingest_time=ingest_time,
            lag_ms=row.lag_ms or 0,
            provenance=row.sub.provenance,
            payload_bytes=len(row.sub.raw),
            idempotency_key=event.idempotency_key,
            schema_fingerprint=row.sub.schema_fingerprint,
        )

    def _first_claims(self, rows: list[_Row], ingest_time: datetime) -> dict[str, Claim]:
        """A claim for the first copy of each identity; later copies in the batch are duplicates."""
        claims: dict[str, Claim] = {}
        for row in rows:
            if row.status is not Status.ACCEPTED:
                continue
            if row.event_id in claims:
                row.status = Status.DUPLICATE
                row.first_occurrence = claims[row.event_id].occurrence_id
                continue
            claims[row.event_id] = self._claim_for(row, ingest_time)
        return claims

    @staticmethod
    def _make_claimant(rows: list[_Row], claimant: _Row) -> None:
        occurrence = claimant.sub.provenance.occurrence_id
        for row in rows:
            if row.event_id == claimant.event_id and row.status is not Status.REJECTED:
                row.status, row.first_occurrence = Status.DUPLICATE, occurrence
        claimant.status, claimant.redelivery, claimant.first_occurrence = (
            Status.ACCEPTED,
            False,
            None,
        )

    def _settle(self, rows: list[_Row], holders: dict[str, Holder]) -> dict[str, _Row]:
        """Apply lost claims: every copy of a taken identity is a duplicate, except the holder's
        own delivery, which is a redelivery when committed. When the holder is a PENDING claim of
        a delivery in this batch (it crashed before committing), that row is returned: it must
        claim again and finish the job."""
        reclaim: dict[str, _Row] = {}
        for row in rows:
            holder = holders.get(row.event_id)
            if holder is None or row.status is Status.REJECTED:
                continue
            occurrence = row.sub.provenance.occurrence_id
            row.first_occurrence = holder.first_occurrence
            row.status = Status.DUPLICATE
            row.redelivery = occurrence in holder.dup_occurrences
            if holder.first_occurrence != occurrence:
                continue
            if holder.state == STATE_PENDING and not self.dry_run:
                reclaim[row.event_id] = row
            else:  # already committed by an earlier run of this very delivery
                row.status, row.redelivery = Status.ACCEPTED, True
        return reclaim

    def _layout(self, rows: list[_Row], label: str, at: datetime) -> dict[str, list[_Row]]:
        """Assign every new row a file and position: one file per partition of the batch."""
        groups: dict[tuple[bool, str | None, str | None], list[_Row]] = defaultdict(list)
        for row in rows:
            if row.redelivery:
                continue
            parsed = row.sub.parsed
            groups[(row.status is Status.REJECTED, parsed.source, parsed.event_type)].append(row)
        files: dict[str, list[_Row]] = {}
        for (quarantine, source, event_type), members in groups.items():
            key = archive_key(
                quarantine=quarantine,
                source=source,
                event_type=event_type,
                ingest_time=at,
                batch=label,
                first=members[0].sub.position,
                last=members[-1].sub.position,
            )
            for position, row in enumerate(members):
                row.pointer = ArchivePointer(self._archive.bucket, key, position)
            files[key] = members
        return files

    def _record(self, row: _Row, ingest_time: datetime) -> ArchiveRecord:
        parsed = row.sub.parsed
        if isinstance(parsed, Rejection):
            return ArchiveRecord(
                event_id=row.event_id,
                status=row.status.value,
                ingest_time=ingest_time,
                raw=row.sub.raw,
                provenance=row.sub.provenance,
                reason=parsed.reason.value,
                detail=parsed.detail,
                source=parsed.source,
                event_type=parsed.event_type,
                entity_id=parsed.entity_id,
            )
        return ArchiveRecord(
            event_id=row.event_id,
            status=row.status.value,
            ingest_time=ingest_time,
            raw=row.sub.raw,
            provenance=row.sub.provenance,
            source=parsed.source,
            event_type=parsed.event_type,
            entity_id=parsed.entity_id,
            event_time=parsed.event_time,
            idempotency_key=parsed.idempotency_key,
            lag_ms=row.lag_ms,
            payload=canonical_json(parsed.payload),
            schema_fingerprint=row.sub.schema_fingerprint,
        )

    def _index_batch(
        self, rows: list[_Row], claims: dict[str, Claim], ingest_time: datetime
    ) -> None:
        commits: list[Commit] = []
        occurrences: list[Occurrence] = []
        duplicates: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            if row.redelivery or row.pointer is None:
                continue
            occurrence = row.sub.provenance.occurrence_id
            if row.status is Status.ACCEPTED:
                commits.append(Commit(row.event_id, occurrence, row.pointer))
                continue
            parsed = row.sub.parsed
            rejection = parsed if isinstance(parsed, Rejection) else None
            event = parsed if isinstance(parsed, Event) else None
            occurrences.append(
                Occurrence(
                    event_id=row.event_id,
                    status=row.status.value,
                    ingest_time=ingest_time,
                    provenance=row.sub.provenance,
                    pointer=row.pointer,
                    reason=rejection.reason.value if rejection else None,
                    detail=rejection.detail if rejection else None,
                    source=parsed.source,
                    event_type=parsed.event_type,
                    entity_id=parsed.entity_id,
                    event_time=event.event_time if event else None,
                    lag_ms=row.lag_ms,
                )
            )
            if row.status is Status.DUPLICATE:
                duplicates[row.event_id].append(occurrence)
        self._index.commit(commits)
        self._index.record_occurrences(occurrences)
        self._index.add_duplicates(duplicates)

    def _count(self, rows: list[_Row]) -> None:
        names = {
            Status.ACCEPTED: "IngestCount",
            Status.DUPLICATE: "DuplicateCount",
            Status.REJECTED: "RejectedCount",
        }
        for row in rows:
            if row.redelivery:
                self._metrics.incr("RedeliveryCount", source=row.sub.parsed.source)
                continue
            parsed = row.sub.parsed
            source, event_type = parsed.source, parsed.event_type
            self._metrics.incr(names[row.status], source=source, event_type=event_type)
            if row.status is Status.ACCEPTED and row.lag_ms is not None:
                lag = max(row.lag_ms, 0)
                self._metrics.observe("IngestLagMs", lag, source=source, event_type=event_type)

    def _result(self, row: _Row) -> IngestResult:
        parsed = row.sub.parsed
        rejection = parsed if isinstance(parsed, Rejection) else None
        return IngestResult(
            status=row.status,
            event_id=row.event_id,
            occurrence_id=row.sub.provenance.occurrence_id,
            lag_ms=row.lag_ms,
            reason=rejection.reason.value if rejection else None,
            detail=rejection.detail if rejection else None,
            archive=row.pointer,
            redelivery=row.redelivery,
            first_occurrence=row.first_occurrence,
        )
