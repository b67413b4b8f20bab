"""The event index port (``EventIndex``) and its DynamoDB and in-memory adapters.

The table's layout (item kinds, write-sharded index keys, GSIs) is in ``infra.index_layout``.
In short, under the table key (``event_id``, ``item``):

* ``item = "event"`` — the identity item, one per event identity, written once by a PartiQL
  ``INSERT`` (25 to a ``BatchExecuteStatement``, 1x; ``DuplicateItem`` when the key exists)
  after its archive file is durable, so it always points at an archived record; its rollup
  counts and time bundles follow per archive file (``infra.claims``). A duplicate never
  overwrites it; it only adds its occurrence id to ``dup_occurrences`` (a PartiQL ``set_add``:
  adding it again changes nothing). Of two concurrent writers exactly one ``INSERT`` succeeds; the other reads
  the winner back.
* ``item = "occ#<occurrence id>"`` — one per duplicate or rejected delivery, with provenance,
  status, reason and archive pointer, an ``INSERT`` with the claims of the same archive files
  and counted with them. Writing one again is harmless (same key, same content).

Selections are answered by Query, never Scan: an entity over the ``by_entity`` shards, a source
and/or event type per event day over its time bundles (``infra.bundles``; the catalog names a
source's types or a type's sources), merged by ``time_key``. Event-time keys are fixed-width
UTC text plus the event id, so string order is time order.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from infra.archive import ArchivePointer
from infra.bundles import (
    BUNDLE_ATTRIBUTES,
    bundle_item,
    bundle_partition,
    bundle_range,
    group_key,
    merge_bundles,
)
from infra.claims import PENDING_LEASE_S, SWEEP_INTERVAL_S, ArchiveFile, ClaimLog
from infra.dynamo import (
    BATCH_GET_MAX_KEYS,
    BATCH_WRITE_MAX_ITEMS,
    batch_get,
    batch_write,
    dynamo_errors,
    paginate,
)
from infra.errors import BackendError, KitError
from infra.index_layout import (
    CATALOG_ITEM_PREFIX,
    CATALOG_PARTITION_PREFIX,
    IDENTITY_ITEM,
    INDEX_BY_ENTITY,
    INDEX_BY_INGEST,
    OCCURRENCE_PREFIX,
    SELECT_ATTRIBUTES,
    WIDE_ENTITY,
    WIDE_INGEST,
    WIDE_RATE,
    WIDE_SHARDS,
    WIDE_TIME,
    catalog_item,
    catalog_partition,
    entity_keys,
    identity_keys,
    merge_sorted,
    occurrence_keys,
    provenance_map,
    restore,
    restore_entry,
    shard_of,
    stored,
    wide_item,
    wide_key,
)
from infra.rollups import (
    LATE_KEEP,
    LATE_RATE,
    Delta,
    accepted_counts,
    add_into,
    lag_bucket,
    late_bundle,
    late_entries,
    late_partition,
    occurrence_counts,
    pick_shard,
    update_ops,
)
from schemas.codec import Provenance
from schemas.envelope import format_time

__all__ = [
    "AFTER_ANY_SUFFIX",
    "BATCH_GET_MAX_KEYS",
    "BATCH_WRITE_MAX_ITEMS",
    "BUNDLES_PER_PAGE",
    "CATALOG_ITEM_PREFIX",
    "CATALOG_PARTITION_PREFIX",
    "IDENTITY_ITEM",
    "INDEX_BY_ENTITY",
    "INDEX_BY_INGEST",
    "OCCURRENCE_PREFIX",
    "CatalogEntry",
    "Claim",
    "DynamoEventIndex",
    "EventIndex",
    "Holder",
    "MemoryEventIndex",
    "Occurrence",
    "QueryPage",
    "Selection",
    "catalog_item",
    "catalog_partition",
    "claim_item",
    "occurrence_item",
    "plain",
]

log = logging.getLogger(__name__)
LATE_SEEDS_PER_BATCH = 8  # latest-arrivals lists a claim call reads, at most
SWEEP_MAX_FILES = 10  # pending files one automatic sweep finishes at most
BUNDLE_MAX_ENTRIES = 1000  # entries of one time bundle (~60 KB; an item holds 400 KB)
BUNDLES_PER_PAGE = 1000  # time bundles a Query page holds at most (and 1 MB, as any page)
AFTER_ANY_SUFFIX = "~"  # sorts after every character of a time key, so "k~" > k and < its successor

CatalogEntry = tuple[str, str, str, str]  # (ingest or event day, source, type, event day or "")


@dataclass(frozen=True, slots=True)
class Claim:
    """A first-seen event identity, asking to become the one indexed copy."""

    event_id: str
    occurrence_id: str
    source: str
    event_type: str
    entity_id: str
    event_time: datetime
    ingest_time: datetime
    lag_ms: int
    provenance: Provenance
    payload_bytes: int
    pointer: ArchivePointer
    idempotency_key: str | None = None
    schema_fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class Occurrence:
    """A delivery that is not the first copy of a valid event: a duplicate or a rejection."""

    event_id: str
    status: str
    ingest_time: datetime
    provenance: Provenance
    pointer: ArchivePointer
    reason: str | None = None
    detail: str | None = None
    source: str | None = None
    event_type: str | None = None
    entity_id: str | None = None
    event_time: datetime | None = None
    lag_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds an identity now (returned when a claim loses)."""

    event_id: str
    first_occurrence: str
    dup_occurrences: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which identity items to read: an entity and/or source/event type, in ``[start, end)``."""

    start: datetime
    end: datetime
    entity_id: str | None = None
    source: str | None = None
    event_type: str | None = None
    min_lag_ms: int | None = None

    def days(self) -> list[str]:
        first, last = self.start.date(), (self.end - timedelta(microseconds=1)).date()
        return [str(first + timedelta(days=n)) for n in range((last - first).days + 1)]

    def validate(self) -> None:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.entity_id is None and self.source is None and self.event_type is None:
            raise ValueError("a selection needs an entity_id, a source or an event_type")

    def matches(self, item: Mapping[str, Any]) -> bool:
        """What the index keys do not already narrow: source/type under an entity, lag."""
        wanted = {"entity_id": self.entity_id, "source": self.source, "event_type": self.event_type}
        if any(w is not None and item.get(k) != w for k, w in wanted.items()):
            return False
        return self.min_lag_ms is None or int(item.get("lag_ms", 0)) >= self.min_lag_ms


@dataclass(frozen=True, slots=True)
class QueryPage:
    items: list[dict[str, Any]]
    scanned: int
    cached: bool = False  # answered from what the reader read a moment ago: no request


class EventIndex(Protocol):
    def claim(
        self, claims: Sequence[Claim], occurrences: Sequence[Occurrence] = ()
    ) -> dict[str, Holder]:
        """Claim each identity and record the duplicate and rejected ``occurrences`` (a
        duplicate's id is added to its identity item's ``dup_occurrences``); a claim that
        loses to another delivery is recorded as a duplicate of it. Recording one again changes
        nothing. Returns the current holder of every identity that was taken."""
        ...

    def lookup(self, event_ids: Sequence[str]) -> dict[str, Holder]: ...

    def record_occurrences(self, occurrences: Sequence[Occurrence]) -> None:
        """``claim`` with no claims."""
        ...

    def record_catalog(self, entries: set[CatalogEntry]) -> None:
        """Note (day, source, event type, event day) entries; idempotent, cheap when noted."""
        ...

    def get(self, event_id: str) -> dict[str, Any] | None: ...

    def occurrences(self, event_id: str) -> list[dict[str, Any]]: ...

    def select(
        self,
        sel: Selection,
        *,
        after: str | None = None,
        page_size: int = 500,
        attributes: Sequence[str] | None = None,
    ) -> Iterator[QueryPage]: ...


def plain(value: Any) -> Any:
    """A deserialized DynamoDB value as plain JSON-able Python, at any depth: numbers are
    Decimals (whole ones become int, others float), sets become sorted lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(plain(v) for v in value)
    return value


def claim_item(c: Claim, *, wide_entity: bool = False) -> dict[str, Any]:
    """The identity item of a claim; ``wide_entity``: its entity's index keys are spread over
    shards (``infra.index_layout``)."""
    event_time = format_time(c.event_time)
    item: dict[str, Any] = {
        "event_id": c.event_id,
        "item": IDENTITY_ITEM,
        "status": "ACCEPTED",
        "first_occurrence": c.occurrence_id,
        "source": c.source,
        "event_type": c.event_type,
        "entity_id": c.entity_id,
        "event_time": event_time,
        "ingest_time": format_time(c.ingest_time),
        "lag_ms": c.lag_ms,
        "payload_bytes": c.payload_bytes,
        **identity_keys(
            c.event_id,
            c.source,
            c.event_type,
            c.entity_id,
            event_time,
            format_time(c.ingest_time),
            c.occurrence_id,
            wide_entity=wide_entity,
        ),
        "archive_bucket": c.pointer.bucket,
        "archive_key": c.pointer.key,
        "archive_position": c.pointer.position,
    }
    if c.idempotency_key is not None:
        item["idempotency_key"] = c.idempotency_key
    if c.schema_fingerprint is not None:
        item["schema_fingerprint"] = c.schema_fingerprint
    return item


def occurrence_item(o: Occurrence, *, wide: bool = False) -> dict[str, Any]:
    ingest_time = format_time(o.ingest_time)
    item: dict[str, Any] = {
        "event_id": o.event_id,
        "item": OCCURRENCE_PREFIX + o.provenance.occurrence_id,
        "status": o.status,
        "occurrence_id": o.provenance.occurrence_id,
        "ingest_time": ingest_time,
        "provenance": provenance_map(o.provenance),
        "archive_bucket": o.pointer.bucket,
        "archive_key": o.pointer.key,
        "archive_position": o.pointer.position,
        **occurrence_keys(
            o.source or "_unknown", ingest_time, o.provenance.occurrence_id, wide=wide
        ),
    }
    optional = {
        "reason": o.reason,
        "detail": o.detail,
        "source": o.source,
        "event_type": o.event_type,
        "entity_id": o.entity_id,
        "event_time": format_time(o.event_time) if o.event_time else None,
        "lag_ms": o.lag_ms,
    }
    item.update({k: v for k, v in optional.items() if v is not None})
    return item


class _LatestSeen:
    """The ``LATE_KEEP`` largest lags this writer indexed, per (source, type, event day): a
    first copy whose lag is larger (to the rollups' two significant digits) gets a
    latest-arrivals entry (``infra.rollups``), at most ``LATE_RATE`` a second per key (a lag
    that keeps growing, a tap falling behind, would otherwise make every event one)."""

    MAX_KEYS = 4096  # days x pairs remembered; forgetting only writes a few entries more

    def __init__(self, clock: Callable[[], float]) -> None:
        self._heaps: dict[tuple[str, str, str], list[int]] = {}
        self._clock = clock
        self._second = 0
        self._written: Counter[tuple[str, str, str]] = Counter()  # entries this second

    def candidates(self, keyed: Sequence[tuple[tuple[str, str, str], int]]) -> list[bool]:
        """Which of (key, lag) get an entry: judged against what this writer indexed and the
        earlier ones of the same call (so a batch adds at most ``LATE_KEEP`` per key)."""
        now = int(self._clock())
        if now != self._second:
            self._second, self._written = now, Counter()
        local: dict[tuple[str, str, str], list[int]] = {}
        out = []
        for key, lag in keyed:
            heap = local.get(key)
            if heap is None:
                heap = local[key] = list(self._heaps.get(key, ()))  # a copy is still a heap
            if self._written[key] >= LATE_RATE:
                out.append(False)
            elif len(heap) < LATE_KEEP:
                heapq.heappush(heap, lag)
                out.append(True)
            elif lag_bucket(lag) > lag_bucket(heap[0]):
                heapq.heapreplace(heap, lag)
                out.append(True)
            else:
                out.append(False)
            self._written[key] += out[-1]
        return out

    def known(self, key: tuple[str, str, str]) -> bool:
        return key in self._heaps

    def seed(self, key: tuple[str, str, str], lags: Iterable[int]) -> None:
        """Start ``key`` from the lags its latest-arrivals list holds (every writer's): a new
        writer then adds entries only above the day's stored top, not its own first 50."""
        for lag in lags:
            self.seen(key, lag)
        self._heaps.setdefault(key, [])

    def seen(self, key: tuple[str, str, str], lag_ms: int) -> None:
        """A first copy this writer indexed."""
        heap = self._heaps.get(key)
        if heap is None:
            if len(self._heaps) >= self.MAX_KEYS:
                self._heaps.clear()
            heap = self._heaps[key] = []
        if len(heap) < LATE_KEEP:
            heapq.heappush(heap, lag_ms)
        elif lag_ms > heap[0]:
            heapq.heapreplace(heap, lag_ms)


def _late_key(c: Claim) -> tuple[str, str, str]:
    return c.source, c.event_type, format_time(c.event_time)[:10]


def _late_key_of(item: Mapping[str, Any]) -> tuple[str, str, str]:
    return str(item["source"]), str(item["event_type"]), str(item["event_time"])[:10]


def _item_counts(item: Mapping[str, Any]) -> Delta:
    """The rollup counts of a stored identity item (what counts is what was written)."""
    return accepted_counts(
        str(item["source"]),
        str(item["event_type"]),
        str(item["ingest_time"]),
        str(item["event_time"]),
        int(item["lag_ms"]),
    )


def _held_by(item: Mapping[str, Any], c: Claim) -> bool:
    """Whether a stored identity item is ``c`` itself: the same delivery, from the same archive
    file (an earlier run of this file's batch, or a sweep of it, wrote it)."""
    return (
        item.get("first_occurrence") == c.occurrence_id
        and item.get("archive_bucket") == c.pointer.bucket
        and item.get("archive_key") == c.pointer.key
    )


def _duplicate(c: Claim) -> Occurrence:
    """A claim that lost to another delivery of its identity: a duplicate of it."""
    return Occurrence(
        event_id=c.event_id,
        status="DUPLICATE",
        ingest_time=c.ingest_time,
        provenance=c.provenance,
        pointer=c.pointer,
        source=c.source,
        event_type=c.event_type,
        entity_id=c.entity_id,
        event_time=c.event_time,
        lag_ms=c.lag_ms,
    )


def _is_dup(o: Occurrence) -> bool:
    return o.status == "DUPLICATE"


def _file_of(pointer: ArchivePointer) -> ArchiveFile:
    return pointer.bucket, pointer.key


def _file_of_item(item: Mapping[str, Any]) -> ArchiveFile:
    return str(item["archive_bucket"]), str(item["archive_key"])


def _occurrence_key(o: Occurrence) -> tuple[str, str]:
    return o.event_id, OCCURRENCE_PREFIX + o.provenance.occurrence_id


def _points_here(item: Mapping[str, Any], pointer: ArchivePointer) -> bool:
    """Whether a stored occurrence item was written from this archive file (an earlier run of
    the file's batch, or a sweep of it), not from another copy of the same delivery."""
    return bool(item) and _file_of_item(item) == _file_of(pointer)


def _grouped(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
    """(event id, occurrence id) pairs as the identity items' ``dup_occurrences`` additions."""
    out: dict[tuple[str, str], list[str]] = {}
    for event_id, occurrence in pairs:
        out.setdefault((event_id, IDENTITY_ITEM), []).append(occurrence)
    return out


def occurrence_delta(o: Occurrence) -> Delta:
    """The rollup counts of a duplicate or rejected delivery."""
    return occurrence_counts(o.source, o.event_type, format_time(o.ingest_time), o.status, o.reason)


def _holder(event_id: str, item: Mapping[str, Any]) -> Holder:
    return Holder(
        event_id=event_id,
        first_occurrence=str(item.get("first_occurrence", "")),
        dup_occurrences=frozenset(item.get("dup_occurrences") or ()),
    )


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _time_key(item: Mapping[str, Any]) -> str:
    return str(item["time_key"])


def _low(sel: Selection, after: str | None) -> str:
    low = format_time(sel.start)
    return after + AFTER_ANY_SUFFIX if after is not None and after >= low else low


def read_wide_marks(
    client: Any,
    table: str,
    marks: Iterable[tuple[str, ...]],
    *,
    known: set[tuple[str, ...]] | frozenset[tuple[str, ...]] = frozenset(),
) -> set[tuple[str, ...]]:
    """Which of ``marks`` (``(WIDE_ENTITY, entity)``, ``(WIDE_TIME, source, event type)``) have
    a wide mark: those in ``known``, and the others by one consistent BatchGetItem."""
    wanted = set(marks)
    found = wanted & known
    unknown = sorted(wanted - found)
    if unknown:
        keys = [{k: {"S": v} for k, v in wide_key(*m).items()} for m in unknown]
        for raw in batch_get(client, table, keys, ConsistentRead=True):
            names = [str(n["S"]) for n in raw.get("names", {}).get("L", [])]
            found.add((str(raw["kind"]["S"]), *names))
    return found


# (bucket, key) -> that file's claims and occurrences (None: not a file of this archive)
Recover = Callable[[str, str], tuple[Sequence[Claim], Sequence["Occurrence"]] | None]
Pair = tuple[str, str]  # (source, event type)


class DynamoEventIndex:
    def __init__(
        self,
        dynamodb_client: Any,
        table: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        recover: Recover | None = None,
    ) -> None:
        """``recover`` reads an archive file's claims and occurrences back
        (``consumers.reindex.file_entries``):
        with it, this writer finishes what a stopped writer left pending (``infra.claims``)."""
        self._ddb = dynamodb_client
        self.table = table
        self._log = ClaimLog(dynamodb_client, table, wall=wall)
        self._recover = recover
        self._last_sweep = -math.inf
        self._ser = TypeSerializer()
        self._de = TypeDeserializer()
        self._catalogued: set[CatalogEntry] = set()  # written by this process already
        self._clock = clock
        self._second = 0
        self._per_key: Counter[tuple[str, ...]] = Counter()  # claims this second, per index key
        self._wide: set[tuple[str, ...]] = set()  # keys this process made wide
        self._rollup_shard = pick_shard()  # this writer's rollup partitions (infra.rollups)
        self._late = _LatestSeen(clock)

    # -- serialisation -------------------------------------------------------------------
    def _dump(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self._ser.serialize(v) for k, v in item.items()}

    def _load(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return restore({k: plain(self._de.deserialize(v)) for k, v in item.items()})

    def _key(self, event_id: str, item: str = IDENTITY_ITEM) -> dict[str, Any]:
        return {"event_id": {"S": event_id}, "item": {"S": item}}

    # -- writes --------------------------------------------------------------------------
    def _widen(self, claims: Sequence[Claim], occurrences: Sequence[Occurrence]) -> None:
        """Count this second's claims and occurrences per index key; a key past ``WIDE_RATE``
        gets its wide mark written (idempotent) before any item uses its other shards."""
        keys: list[tuple[str, ...]] = []
        for c in claims:
            keys += [(WIDE_ENTITY, c.entity_id), (WIDE_TIME, c.source, c.event_type)]
        unique = {(o.event_id, o.provenance.occurrence_id): o for o in occurrences}
        keys += [(WIDE_INGEST, o.source or "_unknown") for o in unique.values()]
        self._count(keys)

    def _count(self, keys: Sequence[tuple[str, ...]]) -> None:
        now = int(self._clock())
        if now != self._second:
            self._second, self._per_key = now, Counter()
        self._per_key.update(keys)
        new = sorted(k for k, n in self._per_key.items() if n > WIDE_RATE and k not in self._wide)
        if new:
            requests = [{"PutRequest": {"Item": self._dump(wide_item(*k))}} for k in new]
            batch_write(self._ddb, self.table, requests)
            self._wide.update(new)

    def _seed_late(self, claims: Sequence[Claim]) -> None:
        """One Query of the stored latest arrivals (their lags) per (source, type, event day)
        this process has not written yet: ~2 RRU instead of up to ``LATE_KEEP`` entries written
        by every new writer (a Lambda cold start, a restarted tap). At most
        ``LATE_SEEDS_PER_BATCH`` a batch: a producer clock that makes up hundreds of event days
        costs a few entries more, not a Query per day."""
        new = sorted({_late_key(c) for c in claims if not self._late.known(_late_key(c))})
        for key in new[:LATE_SEEDS_PER_BATCH]:
            lags: list[int] = []
            try:
                with dynamo_errors(self.table, "Query"):
                    page = self._ddb.query(
                        TableName=self.table,
                        KeyConditionExpression="event_id = :p",
                        ExpressionAttributeValues={":p": {"S": late_partition(*key)}},
                        Limit=LATE_KEEP,
                    )
                lags = [
                    int(entry.get("lag_ms") or 0)
                    for raw in page.get("Items", [])
                    for entry in late_entries(self._load(raw))
                ]
            except BackendError as exc:  # only more entries get written: not worth failing for
                log.warning("latest arrivals not read", extra={"key": key, "error": str(exc)})
            self._late.seed(key, lags)

    def claim(
        self, claims: Sequence[Claim], occurrences: Sequence[Occurrence] = ()
    ) -> dict[str, Holder]:
        """Claim each identity and record the duplicate and rejected ``occurrences`` of the
        same archive files, by the write-ahead protocol of ``infra.claims``: a pending note per
        file, the ``INSERT``s (1x), then per file its time bundles and, in a transaction
        guarded by its counted mark, its rollup counts. A claim that loses to another delivery
        is recorded as a duplicate of it. Returns the holder of every identity that was taken
        (by another delivery, or by this one in an earlier run)."""
        if not claims and not occurrences:
            return {}
        self._widen(claims, occurrences)
        self._seed_late(claims)
        self._sweep_due()
        return self._claim(claims, occurrences)

    def record_occurrences(self, occurrences: Sequence[Occurrence]) -> None:
        """Duplicate and rejected deliveries on their own (``claim`` with no claims)."""
        self.claim((), occurrences)

    def _claim(
        self,
        claims: Sequence[Claim],
        occurrences: Sequence[Occurrence],
        spread: Mapping[ArchiveFile, Sequence[Pair]] | None = None,
    ) -> dict[str, Holder]:
        """``spread``: per file, the (source, type) pairs whose bundles it spreads over shards
        (a sweep's, from the note: the same bundle keys as the file's first writer chose)."""
        wide = self._wide
        first: dict[str, int] = {}
        lost: dict[str, Holder] = {}
        todo: list[tuple[Claim, dict[str, Any]]] = []
        later: list[Occurrence] = []  # duplicates found here: of the batch, or of the table
        for n, c in enumerate(claims):
            if first.setdefault(c.event_id, n) != n:  # a second claim of one identity
                held = claims[first[c.event_id]]
                lost[c.event_id] = Holder(c.event_id, held.occurrence_id)
                if held.occurrence_id != c.occurrence_id:
                    later.append(_duplicate(c))
                continue
            todo.append((c, claim_item(c, wide_entity=(WIDE_ENTITY, c.entity_id) in wide)))
        given = list({(o.event_id, o.provenance.occurrence_id): o for o in occurrences}.values())
        pairs: dict[ArchiveFile, set[Pair]] = {}
        for c, _ in todo:
            pairs.setdefault(_file_of(c.pointer), set()).add((c.source, c.event_type))
        for o in given:
            pairs.setdefault(_file_of(o.pointer), set())
        files = sorted(pairs)
        if spread is None:
            spread = {f: sorted(p for p in pairs[f] if (WIDE_TIME, *p) in wide) for f in files}
        self._log.note({f: spread.get(f, ()) for f in files})
        offered = [item for _, item in todo] + [self._occurrence_item(o) for o in given]
        taken, current = self._insert(offered)
        own: dict[ArchiveFile, list[dict[str, Any]]] = {f: [] for f in files}
        mine: list[dict[str, Any]] = []  # in the order claimed
        for n, (c, item) in enumerate(todo):
            if n in taken:
                item = current.get((c.event_id, IDENTITY_ITEM)) or {}
                lost[c.event_id] = _holder(c.event_id, item)
                if not _held_by(item, c):
                    if lost[c.event_id].first_occurrence != c.occurrence_id:
                        later.append(_duplicate(c))
                    continue
            own[_file_of(c.pointer)].append(item)
            mine.append(item)
        recorded = [  # occurrences this run wrote, or an earlier run of the same file
            o
            for n, o in enumerate(given, start=len(todo))
            if n not in taken or _points_here(current.get(_occurrence_key(o), {}), o.pointer)
        ]
        recorded += self._record_later(later)
        self._log.add_to_sets(
            "dup_occurrences",
            _grouped((o.event_id, o.provenance.occurrence_id) for o in recorded if _is_dup(o)),
        )
        self._write_late(mine)
        bundles = [b for f in files for b in self._bundles_of(own[f], spread.get(f, ()))]
        # deterministic keys (the note fixes the shards): a redo writes the same items again
        batch_write(self._ddb, self.table, [{"PutRequest": {"Item": b}} for b in bundles])
        counted: dict[ArchiveFile, list[Delta]] = {f: [] for f in files}
        for item in mine:
            counted[_file_of_item(item)].append(_item_counts(item))
        for o in recorded:
            counted[_file_of(o.pointer)].append(occurrence_delta(o))
        self._log.settle({file: self._pieces(counted[file]) for file in files})
        self._log.done(files)
        for item in mine:
            self._late.seen(_late_key_of(item), int(item["lag_ms"]))
        return lost

    def _insert(
        self, items: Sequence[Mapping[str, Any]]
    ) -> tuple[set[int], dict[tuple[str, str], dict[str, Any]]]:
        """``INSERT`` identity and occurrence items (as ``stored``): the positions of those whose
        key was taken, and what holds those keys now (a consistent read)."""
        taken = self._log.insert([self._dump(stored(item)) for item in items])
        keys = [self._key(items[n]["event_id"], items[n]["item"]) for n in sorted(taken)]
        current = {
            (str(i["event_id"]), str(i["item"])): i for i in self._batch_get(keys, consistent=True)
        }
        return taken, current

    def _occurrence_item(self, o: Occurrence) -> dict[str, Any]:
        return occurrence_item(o, wide=(WIDE_INGEST, o.source or "_unknown") in self._wide)

    def _record_later(self, later: Sequence[Occurrence]) -> list[Occurrence]:
        """The duplicates that lost their claims here: their occurrence items (rare: a
        concurrent writer, or a re-run), each counted by the file it is in."""
        if not later:
            return []
        taken, current = self._insert([self._occurrence_item(o) for o in later])
        return [
            o
            for n, o in enumerate(later)
            if n not in taken or _points_here(current.get(_occurrence_key(o), {}), o.pointer)
        ]

    def _write_late(self, items: Sequence[Mapping[str, Any]]) -> None:
        """The latest-arrivals entries of first copies (idempotent puts, before their counts:
        a redo writes the same again)."""
        late = self._late.candidates([(_late_key_of(i), int(i["lag_ms"])) for i in items])
        keyed: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
        for item, is_late in zip(items, late, strict=True):
            if is_late:
                keyed.setdefault(_late_key_of(item), []).append(item)
        requests = [  # one bundle per key and batch (a few hundred bytes), not one per entry
            {"PutRequest": {"Item": self._dump(late_bundle(entries))}}
            for _, entries in sorted(keyed.items())
        ]
        batch_write(self._ddb, self.table, requests)

    def _pieces(self, deltas: Sequence[Delta]) -> list[list[dict[str, Any]]]:
        """The rollup updates of one archive file's own claims and occurrences, as transaction
        ops in a fixed order (the same for whichever writer settles the file): each hour's."""
        rolled: Delta = {}
        for delta in deltas:
            add_into(rolled, delta)
        return [
            update_ops(self.table, s, t, h, self._rollup_shard, counts)
            for (s, t, h), counts in sorted(rolled.items())
        ]

    def _bundles_of(
        self, items: Sequence[Mapping[str, Any]], spread: Sequence[Pair]
    ) -> list[dict[str, Any]]:
        """The time bundles of one file's own claims (serialised): per event hour, up to
        ``BUNDLE_MAX_ENTRIES`` each. A pair in ``spread`` puts them on the file's own shard of
        its ``WIDE_SHARDS``: a busy pair's files (tens a second) take even shares of them,
        and a file's entries stay in one bundle, not in a small one per shard (each write
        costs at least 1 WRU)."""
        wide = {tuple(p) for p in spread}
        groups: dict[tuple[str, str, str, int], list[Mapping[str, Any]]] = {}
        for item in items:
            source, event_type, hour = group_key(item)
            on = (source, event_type) in wide
            file = f"{item['archive_bucket']}\n{item['archive_key']}"
            shard = shard_of(file, WIDE_SHARDS) if on else 0
            groups.setdefault((source, event_type, hour, shard), []).append(item)
        return [
            self._dump(bundle_item(chunk, key[3]))
            for key, group in sorted(groups.items())
            for chunk in _chunks(sorted(group, key=_time_key), BUNDLE_MAX_ENTRIES)
        ]

    def sweep(
        self, *, older_than: float = PENDING_LEASE_S, limit: int | None = SWEEP_MAX_FILES
    ) -> int:
        """Finish the archive files whose pending notes are older than ``older_than`` seconds
        (their writer stopped, or is stuck): each is read back from the archive and claimed,
        counted and bundled again, which adds what its writer did not (``infra.claims``).
        Returns the files finished; the notes of at most ``limit`` files (the oldest first), so
        that a backlog left by many stopped writers is worked off a few files per sweep, not
        inside one request."""
        if self._recover is None:
            return 0
        finished = 0
        for pending in self._log.stale(older_than):
            if limit is not None and finished and finished + len(pending.files) > limit:
                break
            claims: list[Claim] = []
            occurrences: list[Occurrence] = []
            unread = 0
            for file in pending.files:
                try:
                    entries = self._recover(*file)
                except KitError as exc:
                    log.warning("pending file not read", extra={"key": file[1], "error": str(exc)})
                    unread += 1
                    continue
                if entries is None:
                    continue  # another archive's file: its own writers finish it
                claims += entries[0]
                occurrences += entries[1]
            if claims or occurrences:
                self._claim(claims, occurrences, pending.spread)
            if not unread:  # else the note stays, and the next sweep tries its files again
                self._log.forget(pending.key)
            finished += len(pending.files) - unread
            log.info("pending files finished", extra={"files": len(pending.files) - unread})
        return finished

    def _sweep_due(self) -> None:
        now = self._clock()
        if self._recover is None or now - self._last_sweep < SWEEP_INTERVAL_S:
            return
        self._last_sweep = now
        try:
            self.sweep()
        except BackendError as exc:  # the next sweep tries again; claims need not wait
            log.warning("pending files not swept", extra={"error": str(exc)})

    def record_catalog(self, entries: set[CatalogEntry]) -> None:
        new = sorted(entries - self._catalogued)
        requests = [{"PutRequest": {"Item": self._dump(catalog_item(*e))}} for e in new]
        batch_write(self._ddb, self.table, requests)
        self._catalogued.update(new)

    # -- reads ---------------------------------------------------------------------------
    def _batch_get(
        self,
        keys: Sequence[dict[str, Any]],
        *,
        consistent: bool,
        attributes: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        options: dict[str, Any] = {"ConsistentRead": consistent}
        if attributes:
            names = {f"#a{i}": a for i, a in enumerate(attributes)}
            options["ProjectionExpression"] = ", ".join(names)
            options["ExpressionAttributeNames"] = names
        return [self._load(raw) for raw in batch_get(self._ddb, self.table, keys, **options)]

    def lookup(self, event_ids: Sequence[str]) -> dict[str, Holder]:
        keys = [self._key(e) for e in sorted(set(event_ids))]
        items = self._batch_get(keys, consistent=True)
        return {item["event_id"]: _holder(item["event_id"], item) for item in items}

    def get(self, event_id: str) -> dict[str, Any] | None:
        with dynamo_errors(self.table, "GetItem"):
            out = self._ddb.get_item(
                TableName=self.table, Key=self._key(event_id), ConsistentRead=True
            )
        return self._load(out["Item"]) if "Item" in out else None

    def occurrences(self, event_id: str) -> list[dict[str, Any]]:
        return [
            item
            for page in self._pages(
                KeyConditionExpression="event_id = :e AND begins_with(#i, :p)",
                ExpressionAttributeNames={"#i": "item"},
                ExpressionAttributeValues={
                    ":e": {"S": event_id},
                    ":p": {"S": OCCURRENCE_PREFIX},
                },
            )
            for item in page.items
        ]

    def catalog(self, day: str) -> list[dict[str, Any]]:
        """The catalog items of one day (which sources, types and event days it saw)."""
        return [
            item
            for page in self._pages(
                KeyConditionExpression="event_id = :e",
                ExpressionAttributeValues={":e": {"S": catalog_partition(day)}},
            )
            for item in page.items
        ]

    def _partitions(self, sel: Selection, day: str) -> list[str]:
        """The time-bundle partition of every shard that may hold ``sel`` on ``day``."""
        if sel.source is not None and sel.event_type is not None:
            pairs = {(sel.source, sel.event_type)}
        else:
            pairs = {
                (str(i["source"]), str(i["event_type"]))
                for i in self.catalog(day)
                if (sel.source is None or i["source"] == sel.source)
                and (sel.event_type is None or i["event_type"] == sel.event_type)
            }
        wide = self.wide_marks([(WIDE_TIME, s, t) for s, t in pairs])
        return [
            bundle_partition(source, event_type, day, shard)
            for source, event_type in sorted(pairs)
            for shard in range(WIDE_SHARDS if (WIDE_TIME, source, event_type) in wide else 1)
        ]

    def wide_marks(self, marks: Sequence[tuple[str, ...]]) -> set[tuple[str, ...]]:
        """Which of ``marks`` are wide (``read_wide_marks``; what this process made wide it
        knows already)."""
        return read_wide_marks(self._ddb, self.table, marks, known=self._wide)

    def select(
        self,
        sel: Selection,
        *,
        after: str | None = None,
        page_size: int = 500,
        attributes: Sequence[str] | None = None,
    ) -> Iterator[QueryPage]:
        """Identity items of a selection in event-time order, page by page, by Query only.

        ``after`` is a ``time_key`` already handled (a replay's cursor): reading resumes past it.
        ``attributes`` limits what each item carries (a projection: much less to transfer).
        """
        sel.validate()
        low, high = _low(sel, after), format_time(sel.end)
        by_entity = sel.entity_id is not None
        groups: list[list[str]]
        if sel.entity_id is not None:
            wide = bool(self.wide_marks([(WIDE_ENTITY, sel.entity_id)]))
            groups = [entity_keys(sel.entity_id, wide=wide)]
        else:
            groups = [self._partitions(sel, day) for day in sel.days()]
        # by_entity and the time bundles carry what selections read; anything else is read
        # from the table by key (a bundle has no dup_occurrences: they change after it).
        carried = SELECT_ATTRIBUTES if by_entity else BUNDLE_ATTRIBUTES
        wanted: list[str] | None = None
        if attributes is not None and not set(attributes) <= carried:
            wanted = list(attributes)
            wanted += [a for a in ("event_id", "source", "event_type", "entity_id", "lag_ms")
                       if a not in wanted]  # fmt: skip
        for partitions in groups:
            scanned = [0]
            streams = [
                self._keys(INDEX_BY_ENTITY, "ek", key, low, high, scanned, page_size)
                if by_entity
                else merge_bundles(self._bundles(key, low, high, page_size), low, high, scanned)
                for key in partitions
            ]
            batch: list[dict[str, Any]] = []
            for entry in merge_sorted(streams, key=_time_key):
                batch.append(entry)
                if len(batch) >= page_size:
                    yield self._fetch(batch, sel, scanned, wanted, attributes)
                    batch = []
            if batch or scanned[0]:
                yield self._fetch(batch, sel, scanned, wanted, attributes)

    def _fetch(
        self,
        entries: list[dict[str, Any]],
        sel: Selection,
        scanned: list[int],
        wanted: list[str] | None,
        attributes: Sequence[str] | None,
    ) -> QueryPage:
        """The identity items of ``entries`` (index entries), in their order, kept if they
        match: the entries themselves, or (``wanted`` not ``None``: what the caller wants is not
        all projected) the items read from the table by key."""
        if wanted is None:
            got = {str(e["event_id"]): e for e in entries}
        else:
            keys = [self._key(str(e["event_id"])) for e in entries]
            found = self._batch_get(keys, consistent=False, attributes=wanted)
            got = {i["event_id"]: i for i in found}
        items = []
        for entry in entries:
            item = got.get(entry["event_id"])
            if item is None or not sel.matches(item):
                continue
            item.setdefault("time_key", entry["time_key"])
            items.append({a: item[a] for a in attributes if a in item} if attributes else item)
        page = QueryPage(items, scanned[0])
        scanned[0] = 0
        return page

    def _keys(
        self,
        index: str,
        attr: str,
        value: str,
        low: str,
        high: str,
        scanned: list[int],
        page_size: int,
    ) -> Iterator[dict[str, Any]]:
        """The index entries of one shard with ``low <= time_key <= high``, in order."""
        for page in self._pages(
            IndexName=index,
            KeyConditionExpression="#pk = :pk AND time_key BETWEEN :low AND :high",
            ExpressionAttributeNames={"#pk": attr},
            ExpressionAttributeValues={
                ":pk": {"S": value},
                ":low": {"S": low},
                ":high": {"S": high},
            },
            Limit=page_size,
        ):
            scanned[0] += page.scanned
            yield from (restore_entry(i) for i in page.items)

    def _bundles(self, partition: str, low: str, high: str, page_size: int) -> Iterator[Any]:
        """The time bundles of one partition that may hold a ``time_key`` in ``[low, high]``,
        in ``item`` order (their entries are counted as scanned when decoded)."""
        first, last = bundle_range(low, high)
        for page in self._pages(
            KeyConditionExpression="event_id = :p AND #i BETWEEN :low AND :high",
            ExpressionAttributeNames={"#i": "item"},
            ExpressionAttributeValues={
                ":p": {"S": partition},
                ":low": {"S": first},
                ":high": {"S": last},
            },
            Limit=BUNDLES_PER_PAGE,
        ):
            yield from page.items

    def _pages(self, **kwargs: Any) -> Iterator[QueryPage]:
        for out in paginate(self._ddb, "Query", self.table, **kwargs):
            items = [self._load(raw) for raw in out.get("Items", [])]
            yield QueryPage(items, int(out.get("ScannedCount", len(items))))


class MemoryEventIndex:
    """In-memory index with the DynamoDB adapter's claim semantics, for unit tests."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def claim(
        self, claims: Sequence[Claim], occurrences: Sequence[Occurrence] = ()
    ) -> dict[str, Holder]:
        holders: dict[str, Holder] = {}
        later = list(occurrences)
        with self._lock:
            for c in claims:
                current = self.items.get((c.event_id, IDENTITY_ITEM))
                if current is None:
                    self.items[(c.event_id, IDENTITY_ITEM)] = claim_item(c)
                    continue
                holders[c.event_id] = _holder(c.event_id, current)
                if holders[c.event_id].first_occurrence != c.occurrence_id:
                    later.append(_duplicate(c))
        self.record_occurrences(later)
        return holders

    def lookup(self, event_ids: Sequence[str]) -> dict[str, Holder]:
        with self._lock:
            return {
                e: _holder(e, self.items[(e, IDENTITY_ITEM)])
                for e in event_ids
                if (e, IDENTITY_ITEM) in self.items
            }

    def record_catalog(self, entries: set[CatalogEntry]) -> None:
        with self._lock:
            for entry in entries:
                item = catalog_item(*entry)
                self.items[(item["event_id"], item["item"])] = item

    def record_occurrences(self, occurrences: Sequence[Occurrence]) -> None:
        with self._lock:
            for o in occurrences:
                item = occurrence_item(o)
                self.items.setdefault((o.event_id, item["item"]), item)
                identity = self.items.get((o.event_id, IDENTITY_ITEM))
                if o.status == "DUPLICATE" and identity is not None:
                    identity["dup_occurrences"] = sorted(
                        {*identity.get("dup_occurrences", []), o.provenance.occurrence_id}
                    )

    def get(self, event_id: str) -> dict[str, Any] | None:
        item = self.items.get((event_id, IDENTITY_ITEM))
        return dict(item) if item else None

    def occurrences(self, event_id: str) -> list[dict[str, Any]]:
        return [
            dict(v)
            for (e, kind), v in sorted(self.items.items())
            if e == event_id and kind.startswith(OCCURRENCE_PREFIX)
        ]

    def catalog(self, day: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(v) for (e, _), v in sorted(self.items.items()) if e == catalog_partition(day)
            ]

    def select(
        self,
        sel: Selection,
        *,
        after: str | None = None,
        page_size: int = 500,
        attributes: Sequence[str] | None = None,
    ) -> Iterator[QueryPage]:
        sel.validate()  # the same validation as the DynamoDB adapter
        low, high = _low(sel, after), format_time(sel.end)
        with self._lock:
            items = sorted(
                (
                    dict(v)
                    for (_, kind), v in self.items.items()
                    if kind == IDENTITY_ITEM and low <= v["time_key"] <= high and sel.matches(v)
                ),
                key=_time_key,
            )
        for start in range(0, len(items), page_size):
            page = items[start : start + page_size]
            if attributes:
                page = [{a: i[a] for a in attributes if a in i} for i in page]
            yield QueryPage(page, len(page))
