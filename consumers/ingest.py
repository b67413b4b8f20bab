"""The ingest sink: the one path from received bytes to archived, indexed truth.

Both the HTTP API and the Kinesis tap feed it batches of ``Submission``. For a batch it

1. validates and identifies every record (a rejection is data with a reason, not an exception);
2. looks its identities up in the index (batched, consistent reads): known ones are duplicates,
   or redeliveries when the very same delivery (occurrence id) is the one indexed;
3. writes the archive: one Avro file per partition of the batch, ``If-None-Match: *``;
4. claims each new identity with a conditional write carrying its archive pointer (one winner
   per identity), then records duplicate and rejected deliveries as occurrence items.

Only then are results returned, so an answer means "archived and indexed", and an index item
never points at a file that is not there. A crash between 3 and 4 leaves archived records that
nothing points at; the retried delivery archives again (the same file name when the caller's
``label`` is deterministic, as the tap's is) and claims. Redelivery is absorbed: no second index
item, no duplicate count. If another process claims an identity between 2 and 4, this copy is
indexed as a DUPLICATE whose archived record still says ACCEPTED: the index is authoritative.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from infra.archive import ArchivePointer, RawArchive
from infra.clock import Clock
from infra.index import CatalogEntry, Claim, EventIndex, Holder, Occurrence
from infra.keys import archive_key
from infra.metrics import Metrics
from schemas.codec import (
    ArchiveRecord,
    Provenance,
    decode_archive,
    encode_archive,
    new_archive_record,
)
from schemas.envelope import Event, Rejection, Status, format_time
from schemas.identity import canonical_json, event_id, rejected_event_id
from schemas.validation import PayloadValidator

log = logging.getLogger(__name__)

UNKNOWN = "_unknown"
_MILLISECOND = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Submission:
    """One received record: its exact bytes, where it came from, and what it parsed to."""

    raw: bytes
    provenance: Provenance
    parsed: Event | Rejection
    position: str  # its place in the batch, used in archive file names ("17", "4961.0")
    schema_fingerprint: str | None = None
    schema_ref: str | None = None  # a remote registry's name for the writer schema
    # This very delivery may have been ingested before (a tap re-reading after a restart). A
    # rejected record is then looked up in the index (one query per rejected identity), so that
    # reading it again is a redelivery rather than a second rejection. Accepted and duplicate
    # records need no flag: the identity lookup every batch makes already tells.
    maybe_redelivered: bool = False


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
    payload: str | None = None  # canonical JSON of an event's payload
    copies_first: bool = False  # the same delivery as an earlier row of this batch
    archived_at: datetime | None = None  # its record's ingest time, when an earlier run wrote it


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
        validator: PayloadValidator | None = None,
    ) -> None:
        self._archive = archive
        self._validator = validator
        self._index = index
        self._clock = clock
        self._metrics = metrics
        self.dry_run = dry_run
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
        firsts = self._first_copies(rows)
        self._settle(rows, self._index.lookup(list(firsts)))
        self._settle_rejected(rows)
        files = self._layout(rows, label, at or ingest_time)
        self.last_plan = BatchPlan(
            files={key: len(members) for key, members in files.items()},
            index_items=sum(1 for r in rows if not r.redelivery),
        )
        if not self.dry_run:
            for key, members in files.items():
                body = encode_archive([self._record(row, ingest_time) for row in members])
                if not self._archive.put_file(key, body):
                    log.info("archive file already present", extra={"key": key})
                    self._adopt(key, members)
            claims = [
                self._claim_for(row, row.archived_at or ingest_time)
                for row in firsts.values()
                if row.status is Status.ACCEPTED and not row.redelivery
            ]
            # with the duplicates and rejections known now; a claim that loses (a concurrent
            # writer got there first) is recorded as a duplicate by the index itself
            holders = self._index.claim(claims, self._occurrences(rows, ingest_time))
            self._settle(rows, holders)
            self._index.record_catalog(self._catalog(rows, ingest_time))
        self._copy_firsts(rows, firsts)
        self._count(rows)
        return [self._result(row) for row in rows]

    # -- steps -----------------------------------------------------------------------------
    def _identify(self, sub: Submission, ingest_time: datetime) -> _Row:
        sub = self._validate(sub)
        parsed = sub.parsed
        if isinstance(parsed, Rejection):
            return _Row(sub, rejected_event_id(sub.raw), Status.REJECTED)
        lag = (ingest_time - parsed.event_time) // _MILLISECOND
        payload = canonical_json(parsed.payload)  # printed once: for the identity and the archive
        return _Row(sub, event_id(parsed, payload), Status.ACCEPTED, lag_ms=lag, payload=payload)

    def _validate(self, sub: Submission) -> Submission:
        """The payload against its registered schema: a misfit becomes a rejection, a fit
        carries the fingerprint of the version it fits. Records decoded with their writer's
        schema (Avro-framed stream records) already carry it and are not checked again."""
        if (
            self._validator is None
            or not isinstance(sub.parsed, Event)
            or sub.schema_fingerprint is not None
        ):
            return sub
        verdict = self._validator.check(sub.parsed)
        if isinstance(verdict, Rejection):
            return replace(sub, parsed=verdict)
        return replace(sub, schema_fingerprint=verdict) if verdict is not None else sub

    @staticmethod
    def _first_copies(rows: list[_Row]) -> dict[str, _Row]:
        """The first copy of each identity in the batch; later copies are its duplicates, or,
        when they are the very same delivery (one occurrence id: a client retrying while its
        first request is still in the group commit), its redeliveries."""
        firsts: dict[str, _Row] = {}
        for row in rows:
            if row.status is Status.REJECTED:
                continue
            first = firsts.setdefault(row.event_id, row)
            if first is row:
                continue
            if first.sub.provenance.occurrence_id == row.sub.provenance.occurrence_id:
                row.redelivery = row.copies_first = True  # answered as its first (_copy_firsts)
            else:
                row.status = Status.DUPLICATE
                row.first_occurrence = first.sub.provenance.occurrence_id
        return firsts

    @staticmethod
    def _copy_firsts(rows: list[_Row], firsts: dict[str, _Row]) -> None:
        """In-batch redeliveries answer what their first copy became (and write nothing)."""
        for row in rows:
            if not row.copies_first:
                continue
            first = firsts[row.event_id]
            row.status, row.first_occurrence = first.status, first.first_occurrence
            row.pointer, row.lag_ms = first.pointer, first.lag_ms

    def _adopt(self, key: str, members: list[_Row]) -> None:
        """A re-run of a batch whose file an earlier run wrote (and then stopped before it was
        indexed): that file is the record, so what the index says of its rows (ingest time,
        lag, and the rollup hours and lag buckets they count in) is read from it, not from now.
        One download, only when a batch is run again."""
        records = list(decode_archive(self._archive.get_file(key)))
        if [r.event_id for r in records] != [row.event_id for row in members]:
            log.warning("archive file holds other records", extra={"key": key})
            return
        for row, record in zip(members, records, strict=True):
            row.archived_at = record.ingest_time
            if record.lag_ms is not None:
                row.lag_ms = record.lag_ms

    def _claim_for(self, row: _Row, ingest_time: datetime) -> Claim:
        event = row.sub.parsed
        assert isinstance(event, Event) and row.pointer is not None
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
            pointer=row.pointer,
            idempotency_key=event.idempotency_key,
            schema_fingerprint=row.sub.schema_fingerprint,
        )

    @staticmethod
    def _settle(rows: list[_Row], holders: dict[str, Holder]) -> None:
        """Identities already indexed: every copy is a duplicate, except the holder's own
        delivery seen again, which is a redelivery (absorbed: nothing new is written)."""
        if not holders:
            return
        for row in rows:
            holder = holders.get(row.event_id)
            if holder is None or row.status is Status.REJECTED or row.copies_first:
                continue
            occurrence = row.sub.provenance.occurrence_id
            if holder.first_occurrence == occurrence:
                row.status, row.redelivery, row.first_occurrence = Status.ACCEPTED, True, None
                continue
            was_archived = row.pointer is not None and not row.redelivery
            row.status = Status.DUPLICATE
            row.first_occurrence = holder.first_occurrence
            row.redelivery = not was_archived and occurrence in holder.dup_occurrences

    def _settle_rejected(self, rows: list[_Row]) -> None:
        """Rejected deliveries that may have been ingested before and whose occurrence is
        indexed already: redeliveries (absorbed: nothing new is written or counted)."""
        suspects = [r for r in rows if r.status is Status.REJECTED and r.sub.maybe_redelivered]
        recorded = {
            str(item.get("occurrence_id"))
            for event_id in {r.event_id for r in suspects}
            for item in self._index.occurrences(event_id)
        }
        for row in suspects:
            row.redelivery = row.sub.provenance.occurrence_id in recorded

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
        parsed, sub = row.sub.parsed, row.sub
        if isinstance(parsed, Rejection):
            return new_archive_record(
                event_id=row.event_id,
                status=row.status.value,
                ingest_time=ingest_time,
                raw=sub.raw,
                provenance=sub.provenance,
                reason=parsed.reason.value,
                detail=parsed.detail,
                source=parsed.source,
                event_type=parsed.event_type,
                entity_id=parsed.entity_id,
            )
        return new_archive_record(  # positional, in ArchiveRecord's field order: once a record
            row.event_id,
            row.status.value,
            ingest_time,
            sub.raw,
            sub.provenance,
            None,  # reason
            None,  # detail
            parsed.source,
            parsed.event_type,
            parsed.entity_id,
            parsed.event_time,
            parsed.idempotency_key,
            row.lag_ms,
            row.payload,  # canonical JSON, printed when the row was identified
            sub.schema_fingerprint,
            sub.schema_ref,
        )

    @staticmethod
    def _catalog(rows: list[_Row], ingest_time: datetime) -> set[CatalogEntry]:
        """(day, source, event type, event day) for each pair of the batch: on its ingest day
        with each event day that arrived (readers by ingest day follow them to the events) and,
        for a valid event, on its event day too: any window's own days then name every pair."""
        entries: set[CatalogEntry] = set()
        for row in rows:
            ingest_day = format_time(row.archived_at or ingest_time)[:10]
            parsed = row.sub.parsed
            pair = (parsed.source or UNKNOWN, parsed.event_type or UNKNOWN)
            if isinstance(parsed, Event):
                event_day = format_time(parsed.event_time)[:10]
                entries.add((ingest_day, *pair, event_day))
                entries.add((event_day, *pair, ""))
            else:
                entries.add((ingest_day, *pair, ""))
        return entries

    @staticmethod
    def _occurrences(rows: list[_Row], ingest_time: datetime) -> list[Occurrence]:
        """Duplicate and rejected deliveries: one occurrence item each, and the duplicate's id
        added to its identity item (both idempotent, so a retried batch changes nothing)."""
        occurrences: list[Occurrence] = []
        for row in rows:
            if row.redelivery or row.pointer is None or row.status is Status.ACCEPTED:
                continue
            parsed = row.sub.parsed
            rejection = parsed if isinstance(parsed, Rejection) else None
            event = parsed if isinstance(parsed, Event) else None
            occurrences.append(
                Occurrence(
                    event_id=row.event_id,
                    status=row.status.value,
                    ingest_time=row.archived_at or ingest_time,
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
        return occurrences

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
