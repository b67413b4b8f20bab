"""Replay planning: which messages a replay sends, in which order, read by Query only.

A plan is a stream of ``PlannedMessage`` in a fixed order, each with a ``position`` that is the
replay's cursor once that message is known sent:

1. **events** — identity items of the selection from ``EventIndex.select`` (event-time order,
   ``[start, end)``), one message each. With ``include_duplicates``, each is followed by its
   recorded duplicate occurrences (``dup_occurrences``, read from the identity items by key,
   then the occurrences by key, in batches), in ingest
   order; each carries its own archive pointer. Position: ``["e", time_key]`` or
   ``["e", time_key, occ_key]`` for an occurrence.
2. **rejected** (``include_rejected``) — rejected deliveries from the ``by_ingest_day`` index, per
   source and ingest day, windowed by *ingest* time (rejected records may have no event time).
   Position: ``["r", source, day, occ_key]``.

Resuming from a cursor reads only what comes after it. An identity item without an archive
pointer (ingest never writes one; it would come from elsewhere) is skipped and counted.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from infra.archive import ArchivePointer
from infra.index import EventIndex, Selection
from infra.replay_queries import ReplayQueries
from schemas.envelope import Status, format_time, parse_time

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "FIRST_IDS_SHOWN",
    "UNKNOWN_SOURCE",
    "PlanSpec",
    "PlanStats",
    "PlanSummary",
    "PlannedMessage",
    "Planner",
    "Position",
    "decode_cursor",
    "encode_cursor",
]

DEFAULT_PAGE_SIZE = 1_000  # DynamoDB stops a page at 1 MB first (~770 identity items)
FIRST_IDS_SHOWN = 10
UNKNOWN_SOURCE = "_unknown"  # where the index files deliveries too broken to name a source
PHASE_EVENTS = "e"
PHASE_REJECTED = "r"

Position = tuple[str, ...]


def encode_cursor(position: Position | None) -> str | None:
    return json.dumps(list(position), separators=(",", ":")) if position else None


def decode_cursor(text: str | None) -> Position | None:
    if not text:
        return None
    value = json.loads(text)
    if not isinstance(value, list) or not value or value[0] not in (PHASE_EVENTS, PHASE_REJECTED):
        raise ValueError(f"not a replay cursor: {text!r}")
    return tuple(str(v) for v in value)


@dataclass(frozen=True, slots=True)
class PlanSpec:
    selection: Selection
    include_duplicates: bool = False
    include_rejected: bool = False


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    key: str  # unique within a replay: event_id, or event_id/occurrence_id
    position: Position
    event_id: str
    status: str
    entity_id: str | None
    source: str | None
    event_type: str | None
    event_time: str | None
    pointer: ArchivePointer
    payload_bytes: int = 0
    occurrence_id: str | None = None
    reason: str | None = None


@dataclass(slots=True)
class PlanStats:
    """What reading cost and what was passed over (filled in while a plan is read)."""

    scanned: int = 0
    skipped_unarchived: int = 0
    limit_reached: bool = False
    sources_seen: set[str] = field(default_factory=set)


@dataclass(slots=True)
class PlanSummary:
    """The blast radius: counts, size, the first event ids and the time range covered."""

    matched: int = 0
    estimated_bytes: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    first_event_ids: list[str] = field(default_factory=list)
    first_event_time: str | None = None
    last_event_time: str | None = None
    first_ingest_time: str | None = None  # of rejected deliveries (windowed by ingest time)
    last_ingest_time: str | None = None

    def add(self, message: PlannedMessage) -> None:
        self.matched += 1
        self.estimated_bytes += message.payload_bytes
        self.by_status[message.status] += 1
        if len(self.first_event_ids) < FIRST_IDS_SHOWN and (
            message.event_id not in self.first_event_ids
        ):
            self.first_event_ids.append(message.event_id)
        if message.position[0] == PHASE_EVENTS and message.event_time:
            if self.first_event_time is None or message.event_time < self.first_event_time:
                self.first_event_time = message.event_time
            if self.last_event_time is None or message.event_time > self.last_event_time:
                self.last_event_time = message.event_time
        elif message.position[0] == PHASE_REJECTED:
            ingest_time = message.position[3].split("#", 1)[0]
            if self.first_ingest_time is None:
                self.first_ingest_time = ingest_time
            self.last_ingest_time = max(self.last_ingest_time or "", ingest_time)
            self.first_ingest_time = min(self.first_ingest_time, ingest_time)

    def to_json(self, stats: PlanStats, rejected_sources: Sequence[str]) -> dict[str, Any]:
        return {
            "estimated_bytes": self.estimated_bytes,
            "by_status": {s.value: self.by_status.get(s.value, 0) for s in Status},
            "first_event_ids": list(self.first_event_ids),
            "covered": {
                "first_event_time": self.first_event_time,
                "last_event_time": self.last_event_time,
                "first_rejected_ingest_time": self.first_ingest_time,
                "last_rejected_ingest_time": self.last_ingest_time,
            },
            "limit_reached": stats.limit_reached,
            "skipped_unarchived": stats.skipped_unarchived,
            "rejected_sources": list(rejected_sources),
        }


def _pointer(item: dict[str, Any]) -> ArchivePointer:
    return ArchivePointer(
        str(item["archive_bucket"]), str(item["archive_key"]), int(item["archive_position"])
    )


class Planner:
    def __init__(
        self, index: EventIndex, queries: ReplayQueries, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> None:
        self._index = index
        self._queries = queries
        self._page_size = page_size

    def rejected_sources(self, spec: PlanSpec, seen: set[str]) -> list[str]:
        """Where to look for rejected deliveries: the requested source, else every source the
        selection's events came from, plus ``_unknown``."""
        if spec.selection.source is not None:
            return [spec.selection.source]
        return sorted(seen | {UNKNOWN_SOURCE})

    def messages(
        self,
        spec: PlanSpec,
        stats: PlanStats,
        *,
        cursor: Position | None = None,
        limit: int | None = None,
        rejected_sources: Sequence[str] | None = None,
    ) -> Iterator[PlannedMessage]:
        """The messages after ``cursor``, at most ``limit``, in replay order.

        ``rejected_sources`` fixes where rejected deliveries are looked for (a resumed job passes
        the list its first plan used); by default it comes from the events read.
        """
        if limit is not None and limit <= 0:
            stats.limit_reached = True
            return
        count = 0
        if cursor is None or cursor[0] == PHASE_EVENTS:
            for message in self._events(spec, stats, cursor, limit):
                yield message
                count += 1
                if limit is not None and count >= limit:
                    stats.limit_reached = True
                    return
            cursor = None
        if not spec.include_rejected or spec.selection.min_lag_ms is not None:
            return
        sources = (
            list(rejected_sources)
            if rejected_sources is not None
            else self.rejected_sources(spec, stats.sources_seen)
        )
        for message in self._rejected(spec, stats, sources, cursor):
            yield message
            count += 1
            if limit is not None and count >= limit:
                stats.limit_reached = True
                return

    # -- events ----------------------------------------------------------------------------
    def _events(
        self, spec: PlanSpec, stats: PlanStats, cursor: Position | None, limit: int | None
    ) -> Iterator[PlannedMessage]:
        sel = spec.selection
        after: str | None = None
        partial: tuple[str, str] | None = None
        if cursor is not None and len(cursor) == 2:
            after = cursor[1]
        elif cursor is not None and len(cursor) == 3:
            # Part of one event's occurrences was sent: read that event again, from its time.
            partial = (cursor[1], cursor[2])
            cursor_time = parse_time(cursor[1].split("#", 1)[0])
            if cursor_time > sel.start:
                sel = replace(sel, start=cursor_time)
        page_size = min(self._page_size, limit) if limit else self._page_size
        for page in self._index.select(sel, after=after, page_size=page_size):
            stats.scanned += page.scanned
            items = [item for item in page.items if self._ready(item, stats, partial)]
            if spec.include_duplicates:
                items = self._with_duplicates(items)
            occurrences = self._occurrences(items, stats) if spec.include_duplicates else {}
            for item in items:
                stats.sources_seen.add(str(item["source"]))
                time_key = str(item["time_key"])
                if partial is None or time_key > partial[0]:
                    yield self._identity_message(item)
                for occ in occurrences.get(str(item["event_id"]), []):
                    position = (PHASE_EVENTS, time_key, str(occ["occ_key"]))
                    if partial is not None and position[1:] <= partial:
                        continue
                    yield self._occurrence_message(occ, position, int(item["payload_bytes"]))

    @staticmethod
    def _ready(item: dict[str, Any], stats: PlanStats, partial: tuple[str, str] | None) -> bool:
        if partial is not None and str(item["time_key"]) < partial[0]:
            return False
        if "archive_key" not in item:  # not written by this kit's ingest: nothing to point at
            stats.skipped_unarchived += 1
            return False
        return True

    def _with_duplicates(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Neither the time bundles nor ``by_entity`` say which events have duplicates (they
        arrive later; projecting them would make each duplicate rewrite an index entry): the
        identity items do, read by key (100 a request)."""
        holders = self._index.lookup([str(i["event_id"]) for i in items])
        for item in items:
            holder = holders.get(str(item["event_id"]))
            if holder is not None and holder.dup_occurrences:
                item["dup_occurrences"] = sorted(holder.dup_occurrences)
        return items

    def _occurrences(
        self, items: list[dict[str, Any]], stats: PlanStats
    ) -> dict[str, list[dict[str, Any]]]:
        keys = [(str(i["event_id"]), occ) for i in items for occ in i.get("dup_occurrences") or []]
        if not keys:
            return {}
        found = self._queries.occurrence_items(keys)
        stats.scanned += len(found)
        by_event: dict[str, list[dict[str, Any]]] = {}
        for (event_id, _), occ in found.items():
            by_event.setdefault(event_id, []).append(occ)
        for occs in by_event.values():
            occs.sort(key=lambda o: str(o["occ_key"]))
        return by_event

    @staticmethod
    def _identity_message(item: dict[str, Any]) -> PlannedMessage:
        return PlannedMessage(
            key=str(item["event_id"]),
            position=(PHASE_EVENTS, str(item["time_key"])),
            event_id=str(item["event_id"]),
            status=str(item.get("status", Status.ACCEPTED.value)),
            entity_id=item.get("entity_id"),
            source=item.get("source"),
            event_type=item.get("event_type"),
            event_time=item.get("event_time"),
            pointer=_pointer(item),
            payload_bytes=int(item.get("payload_bytes", 0)),
        )

    @staticmethod
    def _occurrence_message(
        occ: dict[str, Any], position: Position, payload_bytes: int
    ) -> PlannedMessage:
        return PlannedMessage(
            key=f"{occ['event_id']}/{occ['occurrence_id']}",
            position=position,
            event_id=str(occ["event_id"]),
            status=str(occ["status"]),
            entity_id=occ.get("entity_id"),
            source=occ.get("source"),
            event_type=occ.get("event_type"),
            event_time=occ.get("event_time"),
            pointer=_pointer(occ),
            payload_bytes=payload_bytes,
            occurrence_id=str(occ["occurrence_id"]),
            reason=occ.get("reason"),
        )

    # -- rejected --------------------------------------------------------------------------
    def _rejected(
        self,
        spec: PlanSpec,
        stats: PlanStats,
        sources: Sequence[str],
        cursor: Position | None,
    ) -> Iterator[PlannedMessage]:
        sel = spec.selection
        low, high = format_time(sel.start), format_time(sel.end)
        for source in sources:
            for day in sel.days():
                after: str | None = None
                if cursor is not None:
                    if (source, day) < (cursor[1], cursor[2]):
                        continue
                    if (source, day) == (cursor[1], cursor[2]):
                        after = cursor[3]
                pages = self._queries.deliveries(
                    f"{source}#{day}",
                    low,
                    high,
                    statuses=[Status.REJECTED.value],
                    entity_id=sel.entity_id,
                    event_type=sel.event_type,
                    after=after,
                    page_size=self._page_size,
                )
                for page in pages:
                    stats.scanned += page.scanned
                    for item in page.items:
                        yield PlannedMessage(
                            key=f"{item['event_id']}/{item['occurrence_id']}",
                            position=(PHASE_REJECTED, source, day, str(item["occ_key"])),
                            event_id=str(item["event_id"]),
                            status=str(item["status"]),
                            entity_id=item.get("entity_id"),
                            source=item.get("source"),
                            event_type=item.get("event_type"),
                            event_time=item.get("event_time"),
                            pointer=_pointer(item),
                            occurrence_id=str(item["occurrence_id"]),
                            reason=item.get("reason"),
                        )
