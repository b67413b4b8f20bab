"""Read-only Queries for the investigation commands (audit, gaps, lag, report), by Query only.

Every method reads the shards of one index key, page by page, and yields ``QueryPage`` (the
items kept and DynamoDB's ``ScannedCount``), so a caller can say what an answer cost. Sort-key
ranges are ``BETWEEN low AND high`` on keys of the form ``<time>#<id>``: with ``low``/``high``
the bare ``format_time`` text of ``[start, end)``, an item at exactly ``start`` is in and one at
``end`` is out, because ``"<t>#..."`` sorts after ``"<t>"``. The layout is ``infra.index_layout``.

* ``deliveries``: every delivery of a source ingested on a day: duplicate / rejected occurrence
  items and very late first copies from ``by_ingest``, and the other first copies (identity
  items, ACCEPTED) from the time bundles (``infra.bundles``) of the ``near_days`` the catalog says arrived that day, kept
  by ingest time: at most three event days per type, whatever event times producers sent.
* ``events``: identity items by event time from the time bundles (each of the source's types).
* ``lags``: identity items of one source, type and event day in lag order, smallest or largest
  first (a bundle entry carries ``lag_ms``).
* ``catalog``: the (source, event type) pairs recorded for one day (catalog items).

``MemoryIndexQueries`` answers the same over a ``MemoryEventIndex`` for unit tests.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, Protocol

from boto3.dynamodb.types import TypeDeserializer

from infra.bundles import bundle_partition, bundle_range, merge_pages
from infra.dynamo import paginate
from infra.index import (
    BUNDLES_PER_PAGE,
    CATALOG_PARTITION_PREFIX,
    IDENTITY_ITEM,
    INDEX_BY_INGEST,
    OCCURRENCE_PREFIX,
    MemoryEventIndex,
    QueryPage,
    catalog_partition,
    plain,
    read_wide_marks,
)
from infra.index_layout import (
    WIDE_INGEST,
    WIDE_SHARDS,
    WIDE_TIME,
    ingest_keys,
    near_days,
    restore,
)
from infra.rollups import (
    ARRIVAL_LAG_PREFIX,
    LATE_ATTRIBUTES,
    late_entries,
    late_key_range,
    late_partition,
    late_top,
    recount,
    rollup_partition,
)
from schemas.envelope import parse_time

__all__ = [
    "CATALOG_PARTITION_PREFIX",
    "DEFAULT_PAGE_SIZE",
    "DynamoIndexQueries",
    "IndexQueries",
    "MemoryIndexQueries",
    "catalog_partition",
]

DEFAULT_PAGE_SIZE = 1000
NARROW_TTL_SECONDS = 60.0  # how long a "not wide" answer is trusted
CATALOG_TTL_SECONDS = 10.0  # one day's catalog (and rollups), read once for a whole answer


class IndexQueries(Protocol):
    def deliveries(
        self,
        source: str,
        day: str,
        low: str,
        high: str,
        *,
        event_type: str | None = None,
        attributes: Sequence[str] | None = None,
        first_copies: bool = True,
        page_size: int | None = None,
    ) -> Iterator[QueryPage]:
        """Deliveries of ``source`` ingested on ``day`` with ``low <= occ_key <= high``
        (``first_copies=False``: duplicates and rejections only; ``page_size``: items a Query
        reads at most, for a caller that wants only the first few)."""
        ...

    def events(
        self,
        source: str,
        day: str,
        low: str,
        high: str,
        *,
        event_type: str | None = None,
        attributes: Sequence[str] | None = None,
    ) -> Iterator[QueryPage]:
        """Identity items of ``source`` (and type) with event time on ``day``, in time order."""
        ...

    def lags(
        self,
        source: str,
        event_type: str,
        day: str,
        *,
        low: str | None = None,
        high: str | None = None,
        largest_first: bool = False,
        limit: int | None = None,
        attributes: Sequence[str] | None = None,
    ) -> Iterator[QueryPage]:
        """Identity items of one source, type and event day in lag order; ``low``/``high``
        bound their ``time_key``; at most ``limit`` items in all."""
        ...

    def catalog(self, day: str) -> Iterator[QueryPage]:
        """Catalog items recorded for ingest ``day`` (none until the sink writes them)."""
        ...

    def rollups(self, source: str, day: str, *, arrival: bool = False) -> Iterator[QueryPage]:
        """The rollup items (``infra.rollups``) of ``source``'s hours on ``day``, one per
        (event type, hour) and writer shard: what the investigations count from; ``arrival``:
        the items of its ``la_`` counters (lag by ingest hour and event day) instead."""
        ...

    def latest(
        self,
        source: str,
        event_type: str,
        day: str,
        low: str,
        high: str,
        *,
        limit: int,
        by: str = "event_time",
    ) -> Iterator[QueryPage]:
        """The ``limit`` latest-arriving first copies (largest lag first) of one source, type
        and event day with ``low <= <by> < high`` (``by``: ``event_time`` or ``ingest_time``;
        ``infra.rollups.LATE_ATTRIBUTES``)."""
        ...


class _Expression:
    """Builds names and values for one Query so that no attribute name hits a reserved word."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def name(self, attr: str) -> str:
        placeholder = f"#n{len(self.names)}"
        self.names[placeholder] = attr
        return placeholder

    def value(self, value: str | int) -> str:
        placeholder = f":v{len(self.values)}"
        kind = "N" if isinstance(value, int) else "S"
        self.values[placeholder] = {kind: str(value)}
        return placeholder


_DAY = timedelta(days=1)


def _ms(delta: timedelta) -> int:
    return math.floor(delta.total_seconds() * 1000)


def _day_bounds(day: str, low: str, high: str) -> tuple[str, str]:
    """``[lo, hi)`` of ingest-time text within ``day`` and ``[low, high)``."""
    return max(low, day), min(high, day + "~")


def _lag_order(item: dict[str, Any], largest_first: bool) -> tuple[int, str]:
    """Lag order, ties by event id: the same answer whatever shard an entry was read from."""
    lag = int(item["lag_ms"])
    return (-lag if largest_first else lag, str(item["event_id"]))


def _project(items: list[dict[str, Any]], attributes: Sequence[str] | None) -> list[dict[str, Any]]:
    if not attributes:
        return items
    return [{a: i[a] for a in attributes if a in i} for i in items]


class DynamoIndexQueries:
    def __init__(
        self,
        dynamodb_client: Any,
        table: str,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ddb = dynamodb_client
        self.table = table
        self.page_size = page_size
        self._de = TypeDeserializer()
        self._monotonic = monotonic
        self._known: dict[tuple[str, ...], float] = {}  # mark -> when read narrow (inf: wide)
        self._catalogs: dict[str, tuple[float, list[dict[str, Any]]]] = {}  # day -> (read, items)
        self._rollups: dict[tuple[str, str, bool], tuple[float, list[dict[str, Any]]]] = {}

    def deliveries(
        self,
        source: str,
        day: str,
        low: str,
        high: str,
        *,
        event_type: str | None = None,
        attributes: Sequence[str] | None = None,
        first_copies: bool = True,
        page_size: int | None = None,
    ) -> Iterator[QueryPage]:
        spread = bool(self._wide({(WIDE_INGEST, source)}))
        for key in ingest_keys(source, day, wide=spread):
            for page in self._range(
                INDEX_BY_INGEST, "op", key, "occ_key", low, high,
                equals={"event_type": event_type}, page_size=page_size,
            ):  # fmt: skip
                items = page.items if first_copies else [
                    i for i in page.items if i["item"] != IDENTITY_ITEM
                ]  # fmt: skip
                yield QueryPage(_project(items, attributes), page.scanned)
        lo, hi = _day_bounds(day, low, high)
        if lo >= hi or not first_copies:
            return
        catalog: list[dict[str, Any]] = []
        yield from self._catalog_pages(day, catalog)
        near = set(near_days(day))  # first copies of other event days are in by_ingest
        arrived = sorted(
            {
                (str(i["event_type"]), str(i["event_day"]))
                for i in catalog
                if i.get("source") == source
                and i.get("event_day") in near
                and (event_type is None or i.get("event_type") == event_type)
            }
        )
        wide = self._wide({(WIDE_TIME, source, name) for name, _ in arrived})
        for name, event_day in arrived:
            spread = (WIDE_TIME, source, name) in wide
            for page in self._bundles(source, name, event_day, "", "~", wide=spread):
                items = [i for i in page.items if lo <= str(i["ingest_time"]) < hi]
                yield QueryPage(_project(items, attributes), page.scanned)

    def events(
        self,
        source: str,
        day: str,
        low: str,
        high: str,
        *,
        event_type: str | None = None,
        attributes: Sequence[str] | None = None,
    ) -> Iterator[QueryPage]:
        names = [event_type] if event_type else None
        if names is None:
            catalog: list[dict[str, Any]] = []
            yield from self._catalog_pages(day, catalog)
            names = sorted({str(i["event_type"]) for i in catalog if i.get("source") == source})
        wide = self._wide({(WIDE_TIME, source, name) for name in names})
        for name in names:
            spread = (WIDE_TIME, source, name) in wide
            for page in self._bundles(source, name, day, low, high, wide=spread):
                yield QueryPage(_project(page.items, attributes), page.scanned)

    def lags(
        self,
        source: str,
        event_type: str,
        day: str,
        *,
        low: str | None = None,
        high: str | None = None,
        largest_first: bool = False,
        limit: int | None = None,
        attributes: Sequence[str] | None = None,
    ) -> Iterator[QueryPage]:
        # Bundles are in time order: the shards' entries are sorted by lag here (one day of one
        # source and type; the rollups answer percentiles without reading events).
        # Each Query is one page (what the caller counts); its items come in the last one.
        found: list[dict[str, Any]] = []
        pages = list(self.events(source, day, low or "", high or "~", event_type=event_type))
        for page in pages:
            found.extend(i for i in page.items if "lag_ms" in i)
        found.sort(key=lambda i: _lag_order(i, largest_first))
        if limit is not None:
            found = found[: max(limit, 0)]
        for n, page in enumerate(pages, 1):
            yield QueryPage(_project(found, attributes) if n == len(pages) else [], page.scanned)

    def catalog(self, day: str) -> Iterator[QueryPage]:
        expr = _Expression()
        kwargs = {
            "KeyConditionExpression": f"{expr.name('event_id')} = "
            f"{expr.value(catalog_partition(day))}"
        }
        return self._pages(expr, kwargs, ("source", "event_type"), None)

    def rollups(self, source: str, day: str, *, arrival: bool = False) -> Iterator[QueryPage]:
        now = self._monotonic()
        cached = self._rollups.get((source, day, arrival))
        if cached is not None and now - cached[0] <= CATALOG_TTL_SECONDS:
            yield QueryPage(list(cached[1]), 0, cached=True)  # read a moment ago: no Query
            return
        expr = _Expression()
        partition = rollup_partition(source, day, arrival=arrival)
        kwargs = {"KeyConditionExpression": f"{expr.name('event_id')} = {expr.value(partition)}"}
        items: list[dict[str, Any]] = []
        for page in self._pages(expr, kwargs, None, None):
            items.extend(page.items)
            yield page
        self._rollups[(source, day, arrival)] = (now, items)

    def latest(
        self,
        source: str,
        event_type: str,
        day: str,
        low: str,
        high: str,
        *,
        limit: int,
        by: str = "event_time",
    ) -> Iterator[QueryPage]:
        expr = _Expression()
        partition = late_partition(source, event_type, day)
        key = f"{expr.name('event_id')} = {expr.value(partition)}"
        if by == "ingest_time":  # arrived in [low, high), event time on `day`: a lag of at
            start = parse_time(day + "T00:00:00Z")  # least `first`; an item whose largest lag
            first = _ms(parse_time(low) - start - _DAY)  # is below that holds none
            _, hi = late_key_range(first - 1, first - 1)
            key += f" AND {expr.name('item')} <= {expr.value(hi)}"
        kwargs = {"KeyConditionExpression": key}
        found: dict[str, dict[str, Any]] = {}
        scans: list[int] = []  # one per Query: the caller counts them; the answer comes last
        for page in self._pages(expr, kwargs, None, None, page_size=max(limit, 1)):
            decoded = 0
            for item in page.items:
                entries = late_entries(item)
                decoded += len(entries)
                for entry in entries:
                    if low <= str(entry.get(by) or "") < high:
                        found.setdefault(str(entry["event_id"]), entry)
            scans.append(decoded)
            if page.items and len(found) >= max(limit, 1):  # in rank order: the rest ranks after
                ranks = sorted(_lag_order(e, True) for e in found.values())
                if ranks[max(limit, 1) - 1] <= late_top(page.items[-1]):
                    break
        ranked = sorted(found.values(), key=lambda i: _lag_order(i, True))[: max(limit, 0)]
        for n, scanned in enumerate(scans, 1):
            yield QueryPage(ranked if n == len(scans) else [], scanned)

    def _catalog_pages(self, day: str, into: list[dict[str, Any]]) -> Iterator[QueryPage]:
        """Read one day's catalog items into ``into``, yielding an empty page per Query: the
        catalog says where to look, it is not an answer (the caller still counts the Query)."""
        expr = _Expression()
        kwargs = {
            "KeyConditionExpression": f"{expr.name('event_id')} = "
            f"{expr.value(catalog_partition(day))}"
        }
        now = self._monotonic()
        cached = self._catalogs.get(day)
        if cached is not None and now - cached[0] <= CATALOG_TTL_SECONDS:
            into.extend(cached[1])  # read a moment ago, for another source: no Query
            return
        items: list[dict[str, Any]] = []
        for page in self._pages(expr, kwargs, None, None):
            items.extend(page.items)
            yield QueryPage([], 0)
        self._catalogs[day] = (now, items)
        into.extend(items)

    # -- plumbing ------------------------------------------------------------------------
    def _bundles(
        self, source: str, event_type: str, day: str, low: str, high: str, *, wide: bool
    ) -> Iterator[QueryPage]:
        """The first copies of one source, type and event day with ``low <= time_key <= high``
        from its time bundles (``infra.bundles``), one page per Query, in time order per shard;
        ``scanned``: the entries decoded."""
        first, last = bundle_range(low, high)
        for shard in range(WIDE_SHARDS if wide else 1):
            expr = _Expression()
            partition = bundle_partition(source, event_type, day, shard)
            kwargs = {
                "KeyConditionExpression": f"{expr.name('event_id')} = {expr.value(partition)} "
                f"AND {expr.name('item')} BETWEEN {expr.value(first)} AND {expr.value(last)}"
            }
            raw = (
                p.items for p in self._pages(expr, kwargs, None, None, page_size=BUNDLES_PER_PAGE)
            )
            for entries, scanned in merge_pages(raw, low, high):
                yield QueryPage(entries, scanned)

    def _range(
        self,
        index: str,
        partition_attr: str,
        partition: str,
        sort_attr: str,
        low: str,
        high: str,
        *,
        equals: dict[str, str | None] | None = None,
        attributes: Sequence[str] | None = None,
        page_size: int | None = None,
    ) -> Iterator[QueryPage]:
        expr = _Expression()
        pk, sk = expr.name(partition_attr), expr.name(sort_attr)
        kwargs: dict[str, Any] = {
            "IndexName": index,
            "KeyConditionExpression": f"{pk} = {expr.value(partition)} AND "
            f"{sk} BETWEEN {expr.value(low)} AND {expr.value(high)}",
        }
        clauses = [
            f"{expr.name(attr)} = {expr.value(value)}"
            for attr, value in (equals or {}).items()
            if value is not None
        ]
        if clauses:
            kwargs["FilterExpression"] = " AND ".join(clauses)
        return self._pages(expr, kwargs, attributes, None, page_size=page_size)

    def _pages(
        self,
        expr: _Expression,
        kwargs: dict[str, Any],
        attributes: Sequence[str] | None,
        limit: int | None,
        *,
        page_size: int | None = None,
    ) -> Iterator[QueryPage]:
        if attributes:
            kwargs["ProjectionExpression"] = ", ".join(expr.name(a) for a in attributes)
        kwargs["ExpressionAttributeNames"] = expr.names
        kwargs["ExpressionAttributeValues"] = expr.values
        size = page_size or self.page_size
        pages = paginate(self._ddb, "Query", self.table, **kwargs, Limit=size)
        remaining = limit
        for out in pages:
            items = [self._load(raw) for raw in out.get("Items", [])]
            if remaining is not None:
                items = items[: max(remaining, 0)]
                remaining -= len(items)
            yield QueryPage(items, int(out.get("ScannedCount", len(items))))
            if remaining is not None and remaining <= 0:
                return

    def _load(self, raw: dict[str, Any]) -> dict[str, Any]:
        return restore({k: plain(self._de.deserialize(v)) for k, v in raw.items()})

    def _wide(self, marks: set[tuple[str, ...]]) -> set[tuple[str, ...]]:
        """Those of ``marks`` that are wide. A mark, once written, stays: a wide answer is kept;
        a narrow one is asked again after ``NARROW_TTL_SECONDS`` (an investigation reads each
        key's mark once, not once per day)."""
        now = self._monotonic()
        unknown = [
            m for m in marks if m not in self._known or now - self._known[m] > NARROW_TTL_SECONDS
        ]
        if unknown:
            wide = read_wide_marks(self._ddb, self.table, unknown)
            for m in unknown:
                self._known[m] = math.inf if m in wide else now
        return {m for m in marks if self._known[m] == math.inf}


class MemoryIndexQueries:
    """The same reads over a ``MemoryEventIndex`` (key order, filters, projection, pages)."""

    def __init__(self, index: MemoryEventIndex, *, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        self._index = index
        self.page_size = page_size

    def deliveries(
        self,
        source: str,
        day: str,
        low: str,
        high: str,
        *,
        event_type: str | None = None,
        attributes: Sequence[str] | None = None,
        first_copies: bool = True,
        page_size: int | None = None,
    ) -> Iterator[QueryPage]:
        def delivery_key(item: dict[str, Any]) -> str:
            if item["item"] == IDENTITY_ITEM:
                return f"{item['ingest_time']}#{item['first_occurrence']}"
            return str(item["occ_key"])

        items = sorted(
            (
                i
                for i in self._items()
                if (
                    (first_copies and i["item"] == IDENTITY_ITEM)
                    or i["item"].startswith(OCCURRENCE_PREFIX)
                )
                and (i.get("source") or "_unknown") == source
                and str(i["ingest_time"])[:10] == day
                and low <= delivery_key(i) <= high
                and (event_type is None or i.get("event_type") == event_type)
            ),
            key=delivery_key,
        )
        return self._paged(items, None, attributes, None)

    def events(
        self,
        source: str,
        day: str,
        low: str,
        high: str,
        *,
        event_type: str | None = None,
        attributes: Sequence[str] | None = None,
    ) -> Iterator[QueryPage]:
        items = sorted(
            (
                i
                for i in self._identities(source, event_type, day)
                if low <= str(i["time_key"]) <= high
            ),
            key=lambda i: str(i["time_key"]),
        )
        return self._paged(items, None, attributes, None)

    def lags(
        self,
        source: str,
        event_type: str,
        day: str,
        *,
        low: str | None = None,
        high: str | None = None,
        largest_first: bool = False,
        limit: int | None = None,
        attributes: Sequence[str] | None = None,
    ) -> Iterator[QueryPage]:
        items = sorted(
            (i for i in self._identities(source, event_type, day) if "lag_ms" in i),
            key=lambda i: _lag_order(i, largest_first),
        )
        lo, hi = low or "", high or "~"
        return self._paged(items, lambda i: lo <= i["time_key"] <= hi, attributes, limit)

    def catalog(self, day: str) -> Iterator[QueryPage]:
        items = [i for i in self._items() if i.get("event_id") == catalog_partition(day)]
        return self._paged(items, None, ("source", "event_type"), None)

    def rollups(self, source: str, day: str, *, arrival: bool = False) -> Iterator[QueryPage]:
        delivered = (
            i
            for i in self._items()
            if (i["item"] == IDENTITY_ITEM or i["item"].startswith(OCCURRENCE_PREFIX))
            and (i.get("source") or "_unknown") == source
        )
        items = []
        for r in recount(delivered):
            counts = {
                k: v for k, v in r.counts.items() if k.startswith(ARRIVAL_LAG_PREFIX) == arrival
            }
            if r.hour[:10] == day and counts:
                items.append(
                    {"source": r.source, "event_type": r.event_type, "hour": r.hour, **counts}
                )
        return self._paged(items, None, None, None)

    def latest(
        self,
        source: str,
        event_type: str,
        day: str,
        low: str,
        high: str,
        *,
        limit: int,
        by: str = "event_time",
    ) -> Iterator[QueryPage]:
        items = sorted(
            (i for i in self._identities(source, event_type, day) if low <= str(i[by]) < high),
            key=lambda i: _lag_order(i, True),
        )
        return self._paged(items, None, LATE_ATTRIBUTES, limit)

    def _items(self) -> list[dict[str, Any]]:
        return [dict(v) for v in list(self._index.items.values())]

    def _identities(self, source: str, event_type: str | None, day: str) -> list[dict[str, Any]]:
        return [
            i
            for i in self._items()
            if i["item"] == IDENTITY_ITEM
            and i["source"] == source
            and (event_type is None or i["event_type"] == event_type)
            and str(i["event_time"])[:10] == day
        ]

    def _paged(
        self,
        items: list[dict[str, Any]],
        keep: Callable[[dict[str, Any]], bool] | None,
        attributes: Sequence[str] | None,
        limit: int | None,
    ) -> Iterator[QueryPage]:
        wanted = limit
        if wanted is not None and wanted <= 0:
            return
        start = 0
        while True:
            size = self.page_size if wanted is None else min(self.page_size, wanted)
            page = items[start : start + size]
            start += size
            kept = [i for i in page if keep is None or keep(i)]
            if attributes:
                kept = [{a: i[a] for a in attributes if a in i} for i in kept]
            if wanted is not None:
                wanted -= len(kept)
            yield QueryPage(kept, len(page))
            if start >= len(items) or wanted == 0:
                return
