"""Rebuild the index from the archive alone (``pik reindex``): the archive is the one truth.

Archive files are read hour by hour of their ingest time (the ``ingest_date=``/``hour=`` key
segments), oldest first, and within an hour in record ingest order, so identities are claimed in
the order they first arrived. Per hour:

1. every ACCEPTED record claims its identity (the same conditional put as the sink). A claim held
   by the very same delivery is a redelivery (the record was archived twice around a crash) and
   adds nothing; one held by another delivery made this copy a duplicate when it was ingested
   (two writers raced), and it is indexed as one;
2. DUPLICATE and REJECTED records are recorded as occurrence items, duplicates added to their
   identity's ``dup_occurrences``; catalog entries as the sink writes them.

Every write is idempotent (conditional put, same keys, set union), so a second run, or a run
over an index the sink keeps writing, changes nothing: reindexing is safe to repeat and to
resume from any hour.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from infra.archive import ArchivePointer
from infra.index import CatalogEntry, Claim, EventIndex, Occurrence
from infra.keys import QUARANTINE_PREFIX, RAW_PREFIX, escape_segment
from schemas.codec import ArchiveRecord, decode_archive
from schemas.envelope import Status, format_time

__all__ = ["ArchiveFiles", "ReindexReport", "Reindexer", "file_entries"]

UNKNOWN = "_unknown"
_MICROSECOND = timedelta(microseconds=1)
_PARTITION = re.compile(r"/ingest_date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/")


class ArchiveFiles(Protocol):
    bucket: str

    def keys(self, prefix: str) -> Iterator[str]: ...

    def get_file(self, key: str) -> bytes: ...


@dataclass(slots=True)
class ReindexReport:
    files: int = 0
    records: int = 0
    claimed: int = 0  # identity items written now (0 on a second run)
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    redeliveries: int = 0  # the same delivery archived twice: indexed once

    def to_json(self) -> dict[str, int]:
        return {
            "files": self.files,
            "records": self.records,
            "claimed": self.claimed,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "redeliveries": self.redeliveries,
        }


Progress = Callable[[int, int], None]  # (files done, files in all)


class Reindexer:
    def __init__(self, archive: ArchiveFiles, index: EventIndex) -> None:
        self._archive = archive
        self._index = index

    def plan(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        source: str | None = None,
    ) -> list[tuple[str, list[str]]]:
        """(ingest hour, file keys) in hour order: the files of ``[since, until)`` by ingest
        hour (whole hours: a file is in when its hour overlaps the window)."""
        low = format_time(since)[:13].replace("T", " ") if since else ""
        last = format_time(until - _MICROSECOND)[:13].replace("T", " ") if until else "~"
        hours: dict[str, list[str]] = defaultdict(list)
        for prefix in (RAW_PREFIX, QUARANTINE_PREFIX):
            start = f"{prefix}/"
            if source is not None:
                start += f"source={escape_segment(source)}/"
            for key in self._archive.keys(start):
                match = _PARTITION.search(key)
                if match is None:
                    continue
                hour = f"{match.group(1)} {match.group(2)}"
                if low <= hour <= last:
                    hours[hour].append(key)
        return sorted((h, sorted(keys)) for h, keys in hours.items())

    def run(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        source: str | None = None,
        progress: Progress | None = None,
    ) -> ReindexReport:
        plan = self.plan(since=since, until=until, source=source)
        total = sum(len(keys) for _, keys in plan)
        report = ReindexReport()
        for _, keys in plan:
            records: list[tuple[ArchiveRecord, ArchivePointer]] = []
            for key in keys:
                for position, record in enumerate(decode_archive(self._archive.get_file(key))):
                    records.append((record, ArchivePointer(self._archive.bucket, key, position)))
                report.files += 1
                if progress is not None:
                    progress(report.files, total)
            records.sort(key=lambda r: (r[0].ingest_time, r[0].provenance.occurrence_id))
            self._hour(records, report)
        return report

    def _hour(
        self, records: list[tuple[ArchiveRecord, ArchivePointer]], report: ReindexReport
    ) -> None:
        report.records += len(records)
        claims: list[tuple[Claim, ArchiveRecord, ArchivePointer]] = []
        first: dict[str, str] = {}  # event id -> the first delivery claiming it in this hour
        later: list[tuple[ArchiveRecord, ArchivePointer, str]] = []  # status they get
        for record, pointer in records:
            if record.status == Status.ACCEPTED.value:
                held = first.setdefault(record.event_id, record.provenance.occurrence_id)
                if held != record.provenance.occurrence_id:
                    later.append((record, pointer, Status.DUPLICATE.value))
                else:
                    claims.append((_claim(record, pointer), record, pointer))
            else:
                later.append((record, pointer, record.status))
        unique: dict[tuple[str, str], tuple[Claim, ArchiveRecord, ArchivePointer]] = {}
        for claim, record, pointer in claims:
            unique.setdefault((claim.event_id, claim.occurrence_id), (claim, record, pointer))
        report.redeliveries += len(claims) - len(unique)
        occurrences: list[Occurrence] = []
        for record, pointer, status in later:
            occurrences.append(_occurrence(record, pointer, status))
            if status == Status.DUPLICATE.value:
                report.duplicates += 1
            else:
                report.rejected += 1
        # one call: a claim that loses to another delivery is recorded as its duplicate there
        holders = self._index.claim([c for c, _, _ in unique.values()], occurrences)
        for claim, _, _ in unique.values():
            holder = holders.get(claim.event_id)
            if holder is None:
                report.claimed += 1
                report.accepted += 1
            elif holder.first_occurrence == claim.occurrence_id:
                report.accepted += 1  # indexed before (a second run)
            else:
                report.duplicates += 1
        self._index.record_catalog(_catalog(r for r, _ in records))


def file_entries(bucket: str, key: str, body: bytes) -> tuple[list[Claim], list[Occurrence]]:
    """What an archive file's records asked the index for when it was written: a claim per
    ACCEPTED record, an occurrence per DUPLICATE or REJECTED one. What the index needs to
    finish a file whose writer stopped before counting it (``infra.claims``)."""
    claims: list[Claim] = []
    occurrences: list[Occurrence] = []
    for position, record in enumerate(decode_archive(body)):
        pointer = ArchivePointer(bucket, key, position)
        if record.status == Status.ACCEPTED.value:
            claims.append(_claim(record, pointer))
        else:
            occurrences.append(_occurrence(record, pointer, record.status))
    return claims, occurrences


def _claim(r: ArchiveRecord, pointer: ArchivePointer) -> Claim:
    assert r.source and r.event_type and r.entity_id is not None and r.event_time
    return Claim(
        event_id=r.event_id,
        occurrence_id=r.provenance.occurrence_id,
        source=r.source,
        event_type=r.event_type,
        entity_id=r.entity_id,
        event_time=r.event_time,
        ingest_time=r.ingest_time,
        lag_ms=r.lag_ms or 0,
        provenance=r.provenance,
        payload_bytes=len(r.raw),
        pointer=pointer,
        idempotency_key=r.idempotency_key,
        schema_fingerprint=r.schema_fingerprint,
    )


def _occurrence(r: ArchiveRecord, pointer: ArchivePointer, status: str) -> Occurrence:
    return Occurrence(
        event_id=r.event_id,
        status=status,
        ingest_time=r.ingest_time,
        provenance=r.provenance,
        pointer=pointer,
        reason=r.reason,
        detail=r.detail,
        source=r.source,
        event_type=r.event_type,
        entity_id=r.entity_id,
        event_time=r.event_time,
        lag_ms=r.lag_ms,
    )


def _catalog(records: Iterator[ArchiveRecord] | list[ArchiveRecord]) -> set[CatalogEntry]:
    """The sink's catalog entries (``IngestSink._catalog``) for archived records."""
    entries: set[CatalogEntry] = set()
    for r in records:
        ingest_day = format_time(r.ingest_time)[:10]
        pair = (r.source or UNKNOWN, r.event_type or UNKNOWN)
        if r.status != Status.REJECTED.value and r.event_time is not None:
            event_day = format_time(r.event_time)[:10]
            entries.add((ingest_day, *pair, event_day))
            entries.add((event_day, *pair, ""))
        else:
            entries.add((ingest_day, *pair, ""))
    return entries
