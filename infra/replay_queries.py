"""Reads replay needs beyond ``EventIndex.select``: occurrence items by key, and deliveries by
ingest day. DynamoDB and in-memory adapters (``ReplayQueries``), by Query / BatchGetItem only.

* ``occurrence_items``: the duplicate occurrences an identity item lists in ``dup_occurrences``,
  fetched by their keys (``event_id``, ``occ#<occurrence id>``) with BatchGetItem, 100 keys a
  call, instead of one Query per event.
* ``deliveries``: the ``by_ingest`` index shards (``op`` = ``<source>#<ingest day>#<n>``),
  merged by ``occ_key`` = ``<ingest time>#<occurrence id>``), filtered by status (and entity / event
  type). It is the only place rejected deliveries are indexed, so they are windowed by ingest
  time, not event time (a rejected record may have no event time at all).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from boto3.dynamodb.types import TypeDeserializer

from infra.dynamo import batch_get, paginate
from infra.index import (
    AFTER_ANY_SUFFIX,
    INDEX_BY_INGEST,
    OCCURRENCE_PREFIX,
    MemoryEventIndex,
    QueryPage,
    plain,
    read_wide_marks,
)
from infra.index_layout import WIDE_INGEST, ingest_keys, merge_sorted, restore

__all__ = ["DynamoReplayQueries", "MemoryReplayQueries", "ReplayQueries"]


class ReplayQueries(Protocol):
    def occurrence_items(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """(event_id, occurrence_id) → occurrence item, for the keys that exist."""
        ...

    def deliveries(
        self,
        occ_day: str,
        low: str,
        high: str,
        *,
        statuses: Sequence[str],
        entity_id: str | None = None,
        event_type: str | None = None,
        after: str | None = None,
        page_size: int = 500,
    ) -> Iterator[QueryPage]:
        """Occurrence items of one source and ingest day with ``low <= occ_key <= high`` (past
        ``after`` when given), of the given statuses, in ``occ_key`` order."""
        ...


def _bounds(low: str, after: str | None) -> str:
    return after + AFTER_ANY_SUFFIX if after is not None and after >= low else low


class DynamoReplayQueries:
    def __init__(self, dynamodb_client: Any, table: str) -> None:
        self._ddb = dynamodb_client
        self.table = table
        self._de = TypeDeserializer()

    def _load(self, raw: dict[str, Any]) -> dict[str, Any]:
        return restore({k: plain(self._de.deserialize(v)) for k, v in raw.items()})

    def occurrence_items(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        request = [
            {"event_id": {"S": e}, "item": {"S": OCCURRENCE_PREFIX + o}}
            for e, o in sorted(set(keys))
        ]
        items = (self._load(raw) for raw in batch_get(self._ddb, self.table, request))
        return {(item["event_id"], item["occurrence_id"]): item for item in items}

    def deliveries(
        self,
        occ_day: str,
        low: str,
        high: str,
        *,
        statuses: Sequence[str],
        entity_id: str | None = None,
        event_type: str | None = None,
        after: str | None = None,
        page_size: int = 500,
    ) -> Iterator[QueryPage]:
        names: dict[str, str] = {"#status": "status"}
        values: dict[str, Any] = {
            ":low": {"S": _bounds(low, after)},
            ":high": {"S": high},
        }
        keys = []
        for i, status in enumerate(statuses):
            values[f":s{i}"] = {"S": status}
            keys.append(f":s{i}")
        clauses = [f"#status IN ({', '.join(keys)})"]
        for attr, value in (("entity_id", entity_id), ("event_type", event_type)):
            if value is not None:
                names[f"#{attr}"] = attr
                values[f":{attr}"] = {"S": value}
                clauses.append(f"#{attr} = :{attr}")
        source, day = occ_day.rsplit("#", 1)
        names["#pk"] = "op"
        scanned = [0]

        def shard(key: str) -> Iterator[dict[str, Any]]:
            """Occurrence items of one ``by_ingest`` shard, in ``occ_key`` order."""
            for page in paginate(
                self._ddb,
                "Query",
                self.table,
                IndexName=INDEX_BY_INGEST,
                KeyConditionExpression="#pk = :pk AND occ_key BETWEEN :low AND :high",
                FilterExpression=" AND ".join(clauses),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={**values, ":pk": {"S": key}},
                Limit=page_size,
            ):
                items = page.get("Items", [])
                scanned[0] += int(page.get("ScannedCount", len(items)))
                yield from (self._load(raw) for raw in items)

        wide = bool(read_wide_marks(self._ddb, self.table, [(WIDE_INGEST, source)]))
        merged = merge_sorted(
            [shard(key) for key in ingest_keys(source, day, wide=wide)],
            key=lambda i: str(i["occ_key"]),
        )
        batch: list[dict[str, Any]] = []
        for item in merged:
            batch.append(item)
            if len(batch) >= page_size:
                yield QueryPage(batch, scanned[0])
                batch, scanned[0] = [], 0
        if batch or scanned[0]:
            yield QueryPage(batch, scanned[0])


class MemoryReplayQueries:
    """The same reads over a ``MemoryEventIndex``, for unit tests."""

    def __init__(self, index: MemoryEventIndex) -> None:
        self._index = index

    def occurrence_items(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for event_id, occurrence in keys:
            item = self._index.items.get((event_id, OCCURRENCE_PREFIX + occurrence))
            if item is not None:
                found[(event_id, occurrence)] = dict(item)
        return found

    def deliveries(
        self,
        occ_day: str,
        low: str,
        high: str,
        *,
        statuses: Sequence[str],
        entity_id: str | None = None,
        event_type: str | None = None,
        after: str | None = None,
        page_size: int = 500,
    ) -> Iterator[QueryPage]:
        low = _bounds(low, after)
        in_range = sorted(
            (
                dict(item)
                for item in list(self._index.items.values())
                if str(item.get("op", "")).rsplit("#", 1)[0] == occ_day
                and low <= item["occ_key"] <= high
            ),
            key=lambda item: str(item["occ_key"]),
        )
        for start in range(0, len(in_range), page_size):
            page = in_range[start : start + page_size]
            kept = [
                item
                for item in page
                if item["status"] in statuses
                and (entity_id is None or item.get("entity_id") == entity_id)
                and (event_type is None or item.get("event_type") == event_type)
            ]
            yield QueryPage(kept, len(page))
