"""The event index port (``EventIndex``) and its DynamoDB and in-memory adapters.

One table, two kinds of item under the partition key ``event_id``:

* ``item = "event"`` — the identity item, one per event identity, written once with a
  conditional put (``attribute_not_exists``) after its archive file is durable, so it always
  points at an archived record. A duplicate never overwrites it; it only adds its occurrence
  id to ``dup_occurrences`` (a set: adding it again changes nothing).
* ``item = "occ#<occurrence id>"`` — one per duplicate or rejected delivery, with provenance,
  status, reason and archive pointer. Writing one again is harmless (same key, same content).

Global secondary indexes answer the investigation questions by Query, never Scan:
``by_entity`` (entity, event time); ``by_source_type_day``, ``by_source_day``, ``by_type_day``
(a source and/or event type on one event-time day, by event time); ``by_lag`` (source#type#day,
by lag); ``by_ingest_day`` (source#ingest day: every delivery, incl. duplicates and rejections).
Event-time keys are fixed-width UTC text plus the event id, so string order is time order.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from infra.archive import ArchivePointer
from infra.errors import BackendError, ResourceMissing
from schemas.codec import Provenance
from schemas.envelope import format_time

IDENTITY_ITEM = "event"
OCCURRENCE_PREFIX = "occ#"
CATALOG_PARTITION_PREFIX = "catalog#"  # catalog#<day>: the (source, type) pairs seen that day
CATALOG_ITEM_PREFIX = "cat#"
AWS_TRANSACTION_MAX_ITEMS = 100
LEGACY_TRANSACTION_MAX_ITEMS = 25  # older emulators still enforce the pre-2022 limit
BATCH_WRITE_MAX_ITEMS = 25
BATCH_GET_MAX_KEYS = 100
MAX_CONFLICT_RETRIES = 8

INDEX_BY_ENTITY = "by_entity"  # entity_id, time_key
INDEX_BY_SOURCE_TYPE_DAY = "by_source_type_day"  # source#type#day, time_key
INDEX_BY_SOURCE_DAY = "by_source_day"  # source#day, time_key
INDEX_BY_TYPE_DAY = "by_type_day"  # type#day, time_key
INDEX_BY_LAG = "by_lag"  # source#type#day, lag_ms
INDEX_BY_INGEST_DAY = "by_ingest_day"  # source#ingest day, ingest time#occurrence (all deliveries)
AFTER_ANY_SUFFIX = "~"  # sorts after every character of a time key, so "k~" > k and < its successor


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


@dataclass(frozen=True, slots=True)
class QueryPage:
    items: list[dict[str, Any]]
    scanned: int


def plan_queries(sel: Selection) -> list[tuple[str, str, str]]:
    """(index, key attribute, key value) to Query, in event-time order, for a selection."""
    if sel.end <= sel.start:
        raise ValueError("end must be after start")
    if sel.entity_id is not None:
        return [(INDEX_BY_ENTITY, "entity_id", sel.entity_id)]
    if sel.source is not None and sel.event_type is not None:
        return [
            (INDEX_BY_SOURCE_TYPE_DAY, "source_type_day", _day_key(sel.source, sel.event_type, d))
            for d in sel.days()
        ]
    if sel.source is not None:
        return [(INDEX_BY_SOURCE_DAY, "source_day", _day_key(sel.source, d)) for d in sel.days()]
    if sel.event_type is not None:
        return [(INDEX_BY_TYPE_DAY, "type_day", _day_key(sel.event_type, d)) for d in sel.days()]
    raise ValueError("a selection needs an entity_id, a source or an event_type")


def _selection_filter(sel: Selection, index: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The FilterExpression for what the chosen index's key does not already narrow."""
    clauses: list[str] = []
    names: dict[str, Any] = {}
    values: dict[str, Any] = {}
    if index == INDEX_BY_ENTITY:
        for attr, value in (("source", sel.source), ("event_type", sel.event_type)):
            if value is not None:
                clauses.append(f"#{attr} = :{attr}")
                names[f"#{attr}"] = attr
                values[f":{attr}"] = {"S": value}
    if sel.min_lag_ms is not None:
        clauses.append("lag_ms >= :min_lag")
        values[":min_lag"] = {"N": str(sel.min_lag_ms)}
    return " AND ".join(clauses), names, values


class EventIndex(Protocol):
    def claim(self, claims: Sequence[Claim]) -> dict[str, Holder]:
        """Claim each identity; return the current holder of every identity that was taken."""
        ...

    def lookup(self, event_ids: Sequence[str]) -> dict[str, Holder]: ...

    def record_occurrences(self, occurrences: Sequence[Occurrence]) -> None: ...

    def add_duplicates(self, duplicates: Mapping[str, Sequence[str]]) -> None: ...

    def record_catalog(self, entries: set[tuple[str, str, str]]) -> None:
        """Note (day, source, event type) triples; idempotent, cheap when already noted."""
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


def catalog_partition(day: str) -> str:
    return CATALOG_PARTITION_PREFIX + day


def catalog_item(day: str, source: str, event_type: str) -> dict[str, Any]:
    """Which (source, event type) pairs were seen on a day: investigations start from it."""
    # Hashed: a sort key holds at most 1,024 bytes, and two 128-character names need more.
    pair = hashlib.sha256(json.dumps([source, event_type]).encode()).hexdigest()
    return {
        "event_id": catalog_partition(day),
        "item": CATALOG_ITEM_PREFIX + pair,
        "source": source,
        "event_type": event_type,
        "day": day,
    }


def _day_key(*parts: str) -> str:
    return "#".join(parts)


def _provenance(p: Provenance) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in Provenance.__slots__:
        value = getattr(p, name)
        if value is None:
            continue
        out[name] = format_time(value) if isinstance(value, datetime) else value
    return out


def claim_item(c: Claim) -> dict[str, Any]:
    event_time = format_time(c.event_time)
    ingest_time = format_time(c.ingest_time)
    item: dict[str, Any] = {
        "event_id": c.event_id,
        "item": IDENTITY_ITEM,
        "status": "ACCEPTED",
        "first_occurrence": c.occurrence_id,
        "source": c.source,
        "event_type": c.event_type,
        "entity_id": c.entity_id,
        "event_time": event_time,
        "ingest_time": ingest_time,
        "lag_ms": c.lag_ms,
        "payload_bytes": c.payload_bytes,
        "provenance": _provenance(c.provenance),
        "time_key": f"{event_time}#{c.event_id}",
        "source_type_day": _day_key(c.source, c.event_type, event_time[:10]),
        "source_day": _day_key(c.source, event_time[:10]),
        "type_day": _day_key(c.event_type, event_time[:10]),
        "occ_day": _day_key(c.source, ingest_time[:10]),
        "occ_key": f"{ingest_time}#{c.occurrence_id}",
        "archive_bucket": c.pointer.bucket,
        "archive_key": c.pointer.key,
        "archive_position": c.pointer.position,
    }
    if c.idempotency_key is not None:
        item["idempotency_key"] = c.idempotency_key
    if c.schema_fingerprint is not None:
        item["schema_fingerprint"] = c.schema_fingerprint
    return item


def occurrence_item(o: Occurrence) -> dict[str, Any]:
    ingest_time = format_time(o.ingest_time)
    item: dict[str, Any] = {
        "event_id": o.event_id,
        "item": OCCURRENCE_PREFIX + o.provenance.occurrence_id,
        "status": o.status,
        "occurrence_id": o.provenance.occurrence_id,
        "ingest_time": ingest_time,
        "provenance": _provenance(o.provenance),
        "archive_bucket": o.pointer.bucket,
        "archive_key": o.pointer.key,
        "archive_position": o.pointer.position,
        "occ_day": _day_key(o.source or "_unknown", ingest_time[:10]),
        "occ_key": f"{ingest_time}#{o.provenance.occurrence_id}",
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


def _holder(event_id: str, item: Mapping[str, Any]) -> Holder:
    return Holder(
        event_id=event_id,
        first_occurrence=str(item.get("first_occurrence", "")),
        dup_occurrences=frozenset(item.get("dup_occurrences") or ()),
    )


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _backoff(attempt: int) -> None:
    time.sleep(min(1.0, 0.02 * 2**attempt) * random.random())


class DynamoEventIndex:
    def __init__(self, dynamodb_client: Any, table: str) -> None:
        self._ddb = dynamodb_client
        self.table = table
        self._ser = TypeSerializer()
        self._de = TypeDeserializer()
        self._transaction_size = AWS_TRANSACTION_MAX_ITEMS
        self._catalogued: set[tuple[str, str, str]] = set()  # written by this process already

    # -- serialisation -------------------------------------------------------------------
    def _dump(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self._ser.serialize(v) for k, v in item.items()}

    def _load(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: plain(self._de.deserialize(v)) for k, v in item.items()}

    def _key(self, event_id: str, item: str = IDENTITY_ITEM) -> dict[str, Any]:
        return {"event_id": {"S": event_id}, "item": {"S": item}}

    def _fail(self, what: str, exc: Exception) -> BackendError:
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                return ResourceMissing(
                    f"table {self.table} does not exist (run `pik bootstrap`)", service="dynamodb"
                )
            return BackendError(f"DynamoDB {what} on {self.table}: {code}", code=code)
        return BackendError(f"DynamoDB {what} on {self.table}: {exc}", service="dynamodb")

    # -- transactions --------------------------------------------------------------------
    def _transact(self, ops: Sequence[dict[str, Any]]) -> dict[int, dict[str, Any] | None]:
        """Run ``ops`` in transactions; return {index: current item} for failed conditions.

        A transaction is all-or-nothing, so a chunk whose conditions partly fail is retried
        without the failed operations until what is left succeeds.
        """
        failed: dict[int, dict[str, Any] | None] = {}
        pending = list(range(len(ops)))
        attempt = 0
        while pending:
            chunk, rest = pending[: self._transaction_size], pending[self._transaction_size :]
            try:
                self._ddb.transact_write_items(TransactItems=[ops[i] for i in chunk])
                pending = rest
                attempt = 0
                continue
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                message = exc.response.get("Error", {}).get("Message", "")
                if code == "ValidationException" and "less than or equal to 25" in message:
                    self._transaction_size = LEGACY_TRANSACTION_MAX_ITEMS
                    continue
                if code != "TransactionCanceledException":
                    raise self._fail("TransactWriteItems", exc) from exc
                reasons = exc.response.get("CancellationReasons") or []
                conflict = False
                for index, reason in zip(chunk, reasons, strict=False):
                    reason_code = reason.get("Code", "None")
                    if reason_code == "ConditionalCheckFailed":
                        item = reason.get("Item")
                        failed[index] = self._load(item) if item else None
                    elif reason_code not in ("None", ""):
                        conflict = True
                pending = [i for i in chunk if i not in failed] + rest
                if conflict or not reasons:
                    attempt += 1
                    if attempt > MAX_CONFLICT_RETRIES:
                        raise self._fail("TransactWriteItems (conflicts)", exc) from exc
                    _backoff(attempt)
            except BotoCoreError as exc:
                raise self._fail("TransactWriteItems", exc) from exc
        return failed

    def claim(self, claims: Sequence[Claim]) -> dict[str, Holder]:
        ops = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": self._dump(claim_item(c)),
                    "ConditionExpression": "attribute_not_exists(event_id)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }
            for c in claims
        ]
        failed = self._transact(ops)
        holders: dict[str, Holder] = {}
        for index, item in failed.items():
            event_id = claims[index].event_id
            holders[event_id] = _holder(event_id, item or {})
        return holders

    def add_duplicates(self, duplicates: Mapping[str, Sequence[str]]) -> None:
        ops = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": self._key(event_id),
                    "UpdateExpression": "ADD dup_occurrences :occs",
                    "ConditionExpression": "attribute_exists(event_id)",
                    "ExpressionAttributeValues": {":occs": {"SS": sorted(set(occs))}},
                }
            }
            for event_id, occs in duplicates.items()
            if occs
        ]
        self._transact(ops)

    def record_occurrences(self, occurrences: Sequence[Occurrence]) -> None:
        unique = {(o.event_id, o.provenance.occurrence_id): o for o in occurrences}
        requests = [
            {"PutRequest": {"Item": self._dump(occurrence_item(o))}} for o in unique.values()
        ]
        for chunk in _chunks(requests, BATCH_WRITE_MAX_ITEMS):
            self._batch_write(list(chunk))

    def record_catalog(self, entries: set[tuple[str, str, str]]) -> None:
        new = sorted(entries - self._catalogued)
        requests = [{"PutRequest": {"Item": self._dump(catalog_item(*e))}} for e in new]
        for chunk in _chunks(requests, BATCH_WRITE_MAX_ITEMS):
            self._batch_write(list(chunk))
        self._catalogued.update(new)

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        attempt = 0
        while requests:
            try:
                out = self._ddb.batch_write_item(RequestItems={self.table: requests})
            except (ClientError, BotoCoreError) as exc:
                raise self._fail("BatchWriteItem", exc) from exc
            requests = out.get("UnprocessedItems", {}).get(self.table, [])
            if requests:
                attempt += 1
                if attempt > MAX_CONFLICT_RETRIES:
                    raise BackendError(f"DynamoDB BatchWriteItem on {self.table}: throttled")
                _backoff(attempt)

    def lookup(self, event_ids: Sequence[str]) -> dict[str, Holder]:
        found: dict[str, Holder] = {}
        for chunk in _chunks(sorted(set(event_ids)), BATCH_GET_MAX_KEYS):
            keys: list[dict[str, Any]] = [self._key(e) for e in chunk]
            attempt = 0
            while keys:
                try:
                    out = self._ddb.batch_get_item(
                        RequestItems={self.table: {"Keys": keys, "ConsistentRead": True}}
                    )
                except (ClientError, BotoCoreError) as exc:
                    raise self._fail("BatchGetItem", exc) from exc
                for raw in out.get("Responses", {}).get(self.table, []):
                    item = self._load(raw)
                    found[item["event_id"]] = _holder(item["event_id"], item)
                keys = out.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
                if keys:
                    attempt += 1
                    if attempt > MAX_CONFLICT_RETRIES:
                        raise BackendError(f"DynamoDB BatchGetItem on {self.table}: throttled")
                    _backoff(attempt)
        return found

    def get(self, event_id: str) -> dict[str, Any] | None:
        try:
            out = self._ddb.get_item(
                TableName=self.table, Key=self._key(event_id), ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("GetItem", exc) from exc
        return self._load(out["Item"]) if "Item" in out else None

    def occurrences(self, event_id: str) -> list[dict[str, Any]]:
        return list(
            self._query(
                KeyConditionExpression="event_id = :e AND begins_with(#i, :p)",
                ExpressionAttributeNames={"#i": "item"},
                ExpressionAttributeValues={
                    ":e": {"S": event_id},
                    ":p": {"S": OCCURRENCE_PREFIX},
                },
            )
        )

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
        low, high = format_time(sel.start), format_time(sel.end)
        if after is not None and after >= low:
            low = after + AFTER_ANY_SUFFIX
        for index, attr, value in plan_queries(sel):
            condition, names, values = _selection_filter(sel, index)
            kwargs: dict[str, Any] = {
                "IndexName": index,
                "KeyConditionExpression": "#pk = :pk AND time_key BETWEEN :low AND :high",
                "ExpressionAttributeNames": {"#pk": attr, **names},
                "ExpressionAttributeValues": {
                    ":pk": {"S": value},
                    ":low": {"S": low},
                    ":high": {"S": high},
                    **values,
                },
                "Limit": page_size,
            }
            if condition:
                kwargs["FilterExpression"] = condition
            if attributes:
                names = {f"#a{i}": a for i, a in enumerate(attributes)}
                kwargs["ProjectionExpression"] = ", ".join(names)
                kwargs["ExpressionAttributeNames"].update(names)
            yield from self._pages(**kwargs)

    def _pages(self, **kwargs: Any) -> Iterator[QueryPage]:
        start: dict[str, Any] | None = None
        while True:
            if start:
                kwargs["ExclusiveStartKey"] = start
            try:
                out = self._ddb.query(TableName=self.table, **kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise self._fail("Query", exc) from exc
            items = [self._load(raw) for raw in out.get("Items", [])]
            yield QueryPage(items, int(out.get("ScannedCount", len(items))))
            start = out.get("LastEvaluatedKey")
            if not start:
                return

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every item a Query matches, page by page."""
        start: dict[str, Any] | None = None
        while True:
            if start:
                kwargs["ExclusiveStartKey"] = start
            try:
                out = self._ddb.query(TableName=self.table, **kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise self._fail("Query", exc) from exc
            for raw in out.get("Items", []):
                yield self._load(raw)
            start = out.get("LastEvaluatedKey")
            if not start:
                return


class MemoryEventIndex:
    """In-memory index with the DynamoDB adapter's claim semantics, for unit tests."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def claim(self, claims: Sequence[Claim]) -> dict[str, Holder]:
        holders: dict[str, Holder] = {}
        with self._lock:
            for c in claims:
                current = self.items.get((c.event_id, IDENTITY_ITEM))
                if current is None:
                    self.items[(c.event_id, IDENTITY_ITEM)] = claim_item(c)
                else:
                    holders[c.event_id] = _holder(c.event_id, current)
        return holders

    def lookup(self, event_ids: Sequence[str]) -> dict[str, Holder]:
        with self._lock:
            return {
                e: _holder(e, self.items[(e, IDENTITY_ITEM)])
                for e in event_ids
                if (e, IDENTITY_ITEM) in self.items
            }

    def add_duplicates(self, duplicates: Mapping[str, Sequence[str]]) -> None:
        with self._lock:
            for event_id, occs in duplicates.items():
                item = self.items.get((event_id, IDENTITY_ITEM))
                if item is not None:
                    item["dup_occurrences"] = sorted(
                        set(item.get("dup_occurrences", [])) | set(occs)
                    )

    def record_catalog(self, entries: set[tuple[str, str, str]]) -> None:
        with self._lock:
            for entry in entries:
                item = catalog_item(*entry)
                self.items[(item["event_id"], item["item"])] = item

    def record_occurrences(self, occurrences: Sequence[Occurrence]) -> None:
        with self._lock:
            for o in occurrences:
                item = occurrence_item(o)
                self.items[(o.event_id, item["item"])] = item

    def get(self, event_id: str) -> dict[str, Any] | None:
        item = self.items.get((event_id, IDENTITY_ITEM))
        return dict(item) if item else None

    def occurrences(self, event_id: str) -> list[dict[str, Any]]:
        return [
            dict(v)
            for (e, kind), v in sorted(self.items.items())
            if e == event_id and kind.startswith(OCCURRENCE_PREFIX)
        ]

    def select(
        self,
        sel: Selection,
        *,
        after: str | None = None,
        page_size: int = 500,
        attributes: Sequence[str] | None = None,
    ) -> Iterator[QueryPage]:
        plan_queries(sel)  # the same validation as the DynamoDB adapter
        low, high = format_time(sel.start), format_time(sel.end)
        if after is not None and after >= low:
            low = after + AFTER_ANY_SUFFIX
        wanted = {"entity_id": sel.entity_id, "source": sel.source, "event_type": sel.event_type}
        with self._lock:
            items = sorted(
                (
                    dict(v)
                    for (_, kind), v in self.items.items()
                    if kind == IDENTITY_ITEM
                    and low <= v["time_key"] <= high
                    and all(v[k] == w for k, w in wanted.items() if w is not None)
                    and (sel.min_lag_ms is None or v["lag_ms"] >= sel.min_lag_ms)
                ),
                key=lambda v: str(v["time_key"]),
            )
        for start in range(0, len(items), page_size):
            page = items[start : start + page_size]
            yield QueryPage(page, len(page))
