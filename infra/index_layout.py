"""The events table's layout: item kinds, write-sharded index keys, and the GSI definitions.

Sized for DynamoDB's limits (1,000 WCU/s per partition key value on the table and on each
index): no partition key holds a whole day of a source, a type or an entity. Where a day, a
source, an event type or an entity is a key, the key carries a shard (``#<n>``) derived from the
item's own identity, so one source and one event type writing 10,000 events/s spread over
``TIME_SHARDS`` keys, and a constant ``entity_id`` over ``ENTITY_SHARDS``. Readers Query every
shard of a key and merge the answers by sort key (``merge_sorted``).

Items under the table key (``event_id``, ``item``):

* ``item = "event"``: one per event identity, claimed by one conditional PutItem. Index keys:
  ``ek`` = ``<entity>#<shard>`` (``by_entity``, sorted by ``time_key``) and ``tp`` =
  ``<source>#<type>#<event day>#<shard>`` (``by_time``, sorted by ``time_key``).
* ``item = "occ#<occurrence id>"``: one per duplicate or rejected delivery, with ``op`` =
  ``<source>#<ingest day>#<shard>`` (``by_ingest``, sorted by ``occ_key``). Identity items have
  no ``op``, so the index is sparse: it holds only what is not a first copy.
* ``event_id = "catalog#<ingest day>"``: which (source, type, event day) arrived that day.

GSIs are ``KEYS_ONLY`` or ``INCLUDE`` only what their readers use: ``by_entity`` is keys only
(readers fetch the few identity items they select by key), ``by_time`` includes what the
investigation reads (lag, ingest time, entity) and ``by_ingest`` holds the whole occurrence
(duplicates and rejections are a few percent of deliveries).
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from schemas.codec import Provenance
from schemas.envelope import format_time

__all__ = [
    "ENTITY_SHARDS",
    "INDEX_BY_ENTITY",
    "INDEX_BY_INGEST",
    "INDEX_BY_TIME",
    "INGEST_SHARDS",
    "LAYOUT_VERSION",
    "TIME_SHARDS",
    "entity_keys",
    "gsi_specs",
    "ingest_keys",
    "merge_sorted",
    "shard_of",
    "time_keys",
]

LAYOUT_VERSION = 2
IDENTITY_ITEM = "event"
OCCURRENCE_PREFIX = "occ#"
CATALOG_PARTITION_PREFIX = "catalog#"  # catalog#<ingest day>: (source, type, event day) seen
CATALOG_ITEM_PREFIX = "cat#"

INDEX_BY_ENTITY = "by_entity"  # ek = entity#shard, time_key
INDEX_BY_TIME = "by_time"  # tp = source#type#event day#shard, time_key
INDEX_BY_INGEST = "by_ingest"  # op = source#ingest day#shard, occ_key (occurrences only)
TIME_SHARDS = 16  # 10,000 events/s of one source and type: 625 WCU/s per key
ENTITY_SHARDS = 16  # one constant entity_id at 10,000 events/s: 625 WCU/s per key
INGEST_SHARDS = 4  # duplicates and rejections only
TIME_INCLUDES = ("lag_ms", "ingest_time", "entity_id")
LEGACY_INDEXES = frozenset(  # the turn-1 layout's GSIs: `pik bootstrap` names them
    {"by_source_type_day", "by_source_day", "by_type_day", "by_lag", "by_ingest_day"}
)


def shard_of(text: str, shards: int) -> int:
    """A stable shard for an identity: the same text always lands on the same key."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % shards


def _join(*parts: str | int) -> str:
    return "#".join(str(p) for p in parts)


def entity_keys(entity_id: str) -> list[str]:
    return [_join(entity_id, n) for n in range(ENTITY_SHARDS)]


def time_keys(source: str, event_type: str, day: str) -> list[str]:
    return [_join(source, event_type, day, n) for n in range(TIME_SHARDS)]


def ingest_keys(source: str, day: str) -> list[str]:
    return [_join(source, day, n) for n in range(INGEST_SHARDS)]


def provenance_map(p: Provenance) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in Provenance.__slots__:
        value = getattr(p, name)
        if value is None:
            continue
        out[name] = format_time(value) if isinstance(value, datetime) else value
    return out


def identity_keys(
    event_id: str, source: str, event_type: str, entity_id: str, event_time: str
) -> dict[str, str]:
    """The index keys of an identity item (``event_time`` as ``format_time`` text)."""
    return {
        "time_key": f"{event_time}#{event_id}",
        "ek": _join(entity_id, shard_of(event_id, ENTITY_SHARDS)),
        "tp": _join(source, event_type, event_time[:10], shard_of(event_id, TIME_SHARDS)),
    }


def occurrence_keys(source: str, ingest_time: str, occurrence_id: str) -> dict[str, str]:
    return {
        "op": _join(source, ingest_time[:10], shard_of(occurrence_id, INGEST_SHARDS)),
        "occ_key": f"{ingest_time}#{occurrence_id}",
    }


def catalog_partition(day: str) -> str:
    return CATALOG_PARTITION_PREFIX + day


def catalog_item(day: str, source: str, event_type: str, event_day: str = "") -> dict[str, Any]:
    """A (source, event type) seen on ingest ``day``, with one of its event days (when valid):
    investigations start from it, and reading deliveries by ingest day follows its event days."""
    # Hashed: a sort key holds at most 1,024 bytes, and two 128-character names need more.
    pair = hashlib.sha256(json.dumps([source, event_type, event_day]).encode()).hexdigest()
    item = {
        "event_id": catalog_partition(day),
        "item": CATALOG_ITEM_PREFIX + pair,
        "source": source,
        "event_type": event_type,
        "day": day,
    }
    if event_day:
        item["event_day"] = event_day
    return item


def gsi_specs() -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """(AttributeDefinitions, GlobalSecondaryIndexes) of the events table's indexes."""

    def gsi(name: str, hash_key: str, range_key: str, projection: dict[str, Any]) -> dict[str, Any]:
        return {
            "IndexName": name,
            "KeySchema": [
                {"AttributeName": hash_key, "KeyType": "HASH"},
                {"AttributeName": range_key, "KeyType": "RANGE"},
            ],
            "Projection": projection,
        }

    attrs = [
        {"AttributeName": name, "AttributeType": "S"}
        for name in ("ek", "tp", "time_key", "op", "occ_key")
    ]
    indexes = [
        gsi(INDEX_BY_ENTITY, "ek", "time_key", {"ProjectionType": "KEYS_ONLY"}),
        gsi(
            INDEX_BY_TIME,
            "tp",
            "time_key",
            {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(TIME_INCLUDES)},
        ),
        gsi(INDEX_BY_INGEST, "op", "occ_key", {"ProjectionType": "ALL"}),
    ]
    return attrs, indexes


def merge_sorted(
    streams: Iterable[Iterator[dict[str, Any]]], key: Callable[[dict[str, Any]], str]
) -> Iterator[dict[str, Any]]:
    """Items of several sorted streams (one per shard) as one sorted stream, read lazily."""
    return heapq.merge(*streams, key=key)
