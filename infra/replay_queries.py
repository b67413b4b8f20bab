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
from botocore.exceptions import BotoCoreError, ClientError

from infra.errors import BackendError, ResourceMissing
from infra.index import (
    AFTER_ANY_SUFFIX,
    BATCH_GET_MAX_KEYS,
    INDEX_BY_INGEST,
    OCCURRENCE_PREFIX,
    MemoryEventIndex,
    QueryPage,
    plain,
)
from infra.index_layout import ingest_keys, merge_sorted

__all__ = ["DynamoReplayQueries", "MemoryReplayQueries", "ReplayQueries"]

MAX_UNPROCESSED_RETRIES = 8


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
        return {k: plain(self._de.deserialize(v)) for k, v in raw.items()}

    def _fail(self, what: str, exc: Exception) -> BackendError:
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                return ResourceMissing(
                    f"table {self.table} does not exist (run `pik bootstrap`)", service="dynamodb"
                )
            return BackendError(f"DynamoDB {what} on {self.table}: {code}", code=code)
        return BackendError(f"DynamoDB {what} on {self.table}: {exc}", service="dynamodb")

    def occurrence_items(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        found: dict[tuple[str, str], dict[str, Any]] = {}
        unique = sorted(set(keys))
        for start in range(0, len(unique), BATCH_GET_MAX_KEYS):
            request: list[dict[str, Any]] = [
                {"event_id": {"S": e}, "item": {"S": OCCURRENCE_PREFIX + o}}
                for e, o in unique[start : start + BATCH_GET_MAX_KEYS]
            ]
            attempt = 0
            while request:
                try:
                    out = self._ddb.batch_get_item(RequestItems={self.table: {"Keys": request}})
                except (ClientError, BotoCoreError) as exc:
                    raise self._fail("BatchGetItem", exc) from exc
                for raw in out.get("Responses", {}).get(self.table, []):
                    item = self._load(raw)
                    found[(item["event_id"], item["occurrence_id"])] = item
                request = out.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
                attempt += 1
                if request and attempt > MAX_UNPROCESSED_RETRIES:
                    raise BackendError(f"DynamoDB BatchGetItem on {self.table}: throttled")
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
        streams = []
        for key in ingest_keys(source, day):
            kwargs: dict[str, Any] = {
                "TableName": self.table,
                "IndexName": INDEX_BY_INGEST,
                "KeyConditionExpression": "#pk = :pk AND occ_key BETWEEN :low AND :high",
                "FilterExpression": " AND ".join(clauses),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": {**values, ":pk": {"S": key}},
                "Limit": page_size,
            }
            streams.append(self._shard(kwargs))
        scanned = [0]
        batch: list[dict[str, Any]] = []

        def counted(stream: Iterator[QueryPage]) -> Iterator[dict[str, Any]]:
            for page in stream:
                scanned[0] += page.scanned
                yield from page.items

        merged = merge_sorted([counted(s) for s in streams], key=lambda i: str(i["occ_key"]))
        for item in merged:
            batch.append(item)
            if len(batch) >= page_size:
                yield QueryPage(batch, scanned[0])
                batch, scanned[0] = [], 0
        if batch or scanned[0]:
            yield QueryPage(batch, scanned[0])

    def _shard(self, kwargs: dict[str, Any]) -> Iterator[QueryPage]:
        """Occurrence items of one ``by_ingest`` shard, page by page, in ``occ_key`` order."""
        start: dict[str, Any] | None = None
        while True:
            if start:
                kwargs["ExclusiveStartKey"] = start
            try:
                out = self._ddb.query(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise self._fail("Query", exc) from exc
            items = [self._load(raw) for raw in out.get("Items", [])]
            yield QueryPage(items, int(out.get("ScannedCount", len(items))))
            start = out.get("LastEvaluatedKey")
            if not start:
                return


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
