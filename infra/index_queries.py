"""Read-only Queries for the investigation commands (audit, gaps, lag, report), by Query only.

Every method reads one partition of one index, page by page, and yields ``QueryPage`` (the items
kept and DynamoDB's ``ScannedCount``), so a caller can say what an answer cost. Sort-key ranges
are ``BETWEEN low AND high`` on keys of the form ``<time>#<id>``: with ``low``/``high`` the bare
``format_time`` text of ``[start, end)``, an item at exactly ``start`` is in and one at ``end``
is out, because ``"<t>#..."`` sorts after ``"<t>"``.

* ``deliveries``: ``by_ingest_day`` (``occ_day`` = ``<source>#<ingest day>``) — every delivery:
  identity items (ACCEPTED) and duplicate / rejected occurrence items, by ingest time.
* ``events``: ``by_source_type_day`` or ``by_source_day`` — identity items by event time.
* ``lags``: ``by_lag`` (``source_type_day``, ``lag_ms``) — identity items of one source, type and
  event day in lag order, smallest or largest first.
* ``catalog``: the (source, event type) pairs recorded for one ingest day, read from catalog
  items (``event_id = "catalog#<day>"``) when the sink writes them — see ``docs/investigate.md``.

``MemoryIndexQueries`` answers the same over a ``MemoryEventIndex`` for unit tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from infra.errors import BackendError, ResourceMissing
from infra.index import (
    CATALOG_PARTITION_PREFIX,
    INDEX_BY_INGEST_DAY,
    INDEX_BY_LAG,
    INDEX_BY_SOURCE_DAY,
    INDEX_BY_SOURCE_TYPE_DAY,
    MemoryEventIndex,
    QueryPage,
    catalog_partition,
    plain,
)

__all__ = [
    "CATALOG_PARTITION_PREFIX",
    "DEFAULT_PAGE_SIZE",
    "DynamoIndexQueries",
    "IndexQueries",
    "MemoryIndexQueries",
    "catalog_partition",
]

DEFAULT_PAGE_SIZE = 1000


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
    ) -> Iterator[QueryPage]:
        """Deliveries of ``source`` ingested on ``day`` with ``low <= occ_key <= high``."""
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


class DynamoIndexQueries:
    def __init__(
        self, dynamodb_client: Any, table: str, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> None:
        self._ddb = dynamodb_client
        self.table = table
        self.page_size = page_size
        self._de = TypeDeserializer()

    def deliveries(
        self,
        source: str,
        day: str,
        low: str,
        high: str,
        *,
        event_type: str | None = None,
        attributes: Sequence[str] | None = None,
    ) -> Iterator[QueryPage]:
        return self._range(
            INDEX_BY_INGEST_DAY, "occ_day", f"{source}#{day}", "occ_key", low, high,
            equals={"event_type": event_type}, attributes=attributes,
        )  # fmt: skip

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
        if event_type is None:
            index, attr, value = INDEX_BY_SOURCE_DAY, "source_day", f"{source}#{day}"
        else:
            index, attr = INDEX_BY_SOURCE_TYPE_DAY, "source_type_day"
            value = f"{source}#{event_type}#{day}"
        return self._range(index, attr, value, "time_key", low, high, attributes=attributes)

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
        expr = _Expression()
        kwargs: dict[str, Any] = {
            "IndexName": INDEX_BY_LAG,
            "KeyConditionExpression": f"{expr.name('source_type_day')} = "
            f"{expr.value(f'{source}#{event_type}#{day}')}",
            "ScanIndexForward": not largest_first,
        }
        if low is not None or high is not None:
            time_key = expr.name("time_key")
            lo, hi = expr.value(low or ""), expr.value(high or "~")
            kwargs["FilterExpression"] = f"{time_key} BETWEEN {lo} AND {hi}"
        return self._pages(expr, kwargs, attributes, limit)

    def catalog(self, day: str) -> Iterator[QueryPage]:
        expr = _Expression()
        kwargs = {
            "KeyConditionExpression": f"{expr.name('event_id')} = "
            f"{expr.value(catalog_partition(day))}"
        }
        return self._pages(expr, kwargs, ("source", "event_type"), None)

    # -- plumbing ------------------------------------------------------------------------
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
        return self._pages(expr, kwargs, attributes, None)

    def _pages(
        self,
        expr: _Expression,
        kwargs: dict[str, Any],
        attributes: Sequence[str] | None,
        limit: int | None,
    ) -> Iterator[QueryPage]:
        if attributes:
            kwargs["ProjectionExpression"] = ", ".join(expr.name(a) for a in attributes)
        kwargs["ExpressionAttributeNames"] = expr.names
        kwargs["ExpressionAttributeValues"] = expr.values
        wanted = limit
        if wanted is not None and wanted <= 0:
            return
        start: dict[str, Any] | None = None
        while True:
            page_size = self.page_size if wanted is None else min(self.page_size, wanted)
            call = {**kwargs, "Limit": page_size}
            if start:
                call["ExclusiveStartKey"] = start
            try:
                out = self._ddb.query(TableName=self.table, **call)
            except (ClientError, BotoCoreError) as exc:
                raise self._fail(exc) from exc
            items = [self._load(raw) for raw in out.get("Items", [])]
            if wanted is not None:
                items = items[:wanted]
                wanted -= len(items)
            yield QueryPage(items, int(out.get("ScannedCount", len(items))))
            start = out.get("LastEvaluatedKey")
            if not start or wanted == 0:
                return

    def _load(self, raw: dict[str, Any]) -> dict[str, Any]:
        return {k: plain(self._de.deserialize(v)) for k, v in raw.items()}

    def _fail(self, exc: Exception) -> BackendError:
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                return ResourceMissing(
                    f"table {self.table} does not exist (run `pik bootstrap`)", service="dynamodb"
                )
            return BackendError(f"DynamoDB Query on {self.table}: {code}", code=code)
        return BackendError(f"DynamoDB Query on {self.table}: {exc}", service="dynamodb")


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
    ) -> Iterator[QueryPage]:
        def keep(item: dict[str, Any]) -> bool:
            return event_type is None or item.get("event_type") == event_type

        return self._range("occ_day", f"{source}#{day}", "occ_key", low, high, keep, attributes)

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
        if event_type is None:
            attr, value = "source_day", f"{source}#{day}"
        else:
            attr, value = "source_type_day", f"{source}#{event_type}#{day}"
        return self._range(attr, value, "time_key", low, high, None, attributes)

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
        partition = f"{source}#{event_type}#{day}"
        items = sorted(
            (i for i in self._items() if i.get("source_type_day") == partition and "lag_ms" in i),
            key=lambda i: int(i["lag_ms"]),
            reverse=largest_first,
        )
        lo, hi = low or "", high or "~"
        return self._paged(items, lambda i: lo <= i["time_key"] <= hi, attributes, limit)

    def catalog(self, day: str) -> Iterator[QueryPage]:
        items = [i for i in self._items() if i.get("event_id") == catalog_partition(day)]
        return self._paged(items, None, ("source", "event_type"), None)

    def _items(self) -> list[dict[str, Any]]:
        return [dict(v) for v in list(self._index.items.values())]

    def _range(
        self,
        partition_attr: str,
        partition: str,
        sort_attr: str,
        low: str,
        high: str,
        keep: Callable[[dict[str, Any]], bool] | None,
        attributes: Sequence[str] | None,
    ) -> Iterator[QueryPage]:
        items = sorted(
            (
                i
                for i in self._items()
                if i.get(partition_attr) == partition and low <= i.get(sort_attr, "") <= high
            ),
            key=lambda i: str(i[sort_attr]),
        )
        return self._paged(items, keep, attributes, None)

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
