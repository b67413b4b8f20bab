"""The events table's layout: item kinds, write-sharded index keys, and the GSI definitions.

Sized for DynamoDB's limits (1,000 WCU/s per partition key value on the table and on each
index): no partition key has to take a whole busy day of a source, a type or an entity. Each
index key carries a shard (``#<n>``). A key is *narrow* (every item on shard 0, one Query to
read it) until a writer sees it busy: more than ``WIDE_RATE`` events a second from one process.
The writer then records a *wide mark* for it (``event_id = "wide"``) and from then on spreads
its items over ``WIDE_SHARDS`` shards by identity, so one source and type, or one constant
``entity_id``, writing 10,000 events/s puts about 625 WCU/s on each key. Readers read the marks
of the keys they need (one BatchGetItem) and Query shard 0 of a narrow key, every shard of a
wide one, merging the answers by sort key (``merge_sorted``). Items written narrow before the
mark stay on shard 0, which the readers of a wide key read too.

Items under the table key (``event_id``, ``item``):

* ``item = "event"``: one per event identity, claimed by a PartiQL ``INSERT`` (a conditional
  put, 25 to a request: ``infra.claims``). Index key: ``ek`` = ``<entity>#<shard>``
  (``by_entity``, sorted by ``time_key``). Selections by source and event type read time
  bundles instead (``infra.bundles``: one item per archive file, source, type and event hour),
  whose partitions are sharded the same way (``WIDE_TIME`` marks).
* ``item = "occ#<occurrence id>"``: one per duplicate or rejected delivery, with ``op`` =
  ``<source>#<ingest day>#<shard>`` (``by_ingest``, sorted by ``occ_key``). Identity items have
  no ``op`` unless their event day is more than ``NEAR_DAYS`` before their ingest day (or after
  it), so the index is sparse: it holds what is not a first copy, and very late first copies.
* ``event_id = "catalog#<ingest day>"``: which (source, type, event day) arrived that day.
* ``event_id = "wide"``, ``item = "e#<hash>"`` / ``"t#<hash>"`` / ``"i#<hash>"``: an entity, a
  source and event type (its time bundles), or a source's duplicates and rejections, whose
  keys are spread over ``WIDE_SHARDS`` shards.

Identity and occurrence items are written without what their keys say (``stored``: an
identity's event time, entity and status, its archive key relative to its source, type and
ingest hour; an occurrence's id, which its ``item`` holds) and read back whole (``restore``, in
every reader's deserialiser), ~150 bytes less on the table and on ``by_entity`` per event.

GSIs project only what their readers use: ``by_entity`` ``INCLUDE``s the ``SELECT_INCLUDES``
(what a replay message, a processor window and the investigations read, so a selection needs
no read of the table after its Queries), and ``by_ingest`` holds the whole occurrence
(duplicates and rejections are a few percent of deliveries).
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from infra.keys import QUARANTINE_PREFIX, RAW_PREFIX, escape_segment
from schemas.codec import Provenance
from schemas.envelope import format_time

__all__ = [
    "INDEX_BY_ENTITY",
    "INDEX_BY_INGEST",
    "LAYOUT_VERSION",
    "SELECT_ATTRIBUTES",
    "SHARD_KEYS",
    "WIDE_RATE",
    "WIDE_SHARDS",
    "entity_keys",
    "gsi_specs",
    "ingest_keys",
    "merge_sorted",
    "restore",
    "restore_entry",
    "shard_of",
    "stored",
    "wide_item",
    "wide_key",
]

LAYOUT_VERSION = 3
IDENTITY_ITEM = "event"
OCCURRENCE_PREFIX = "occ#"
CATALOG_PARTITION_PREFIX = "catalog#"  # catalog#<ingest day>: (source, type, event day) seen
CATALOG_ITEM_PREFIX = "cat#"

INDEX_BY_ENTITY = "by_entity"  # ek = entity#shard, time_key
INDEX_BY_INGEST = "by_ingest"  # op = source#ingest day#shard, occ_key (occurrences only)
WIDE_SHARDS = 16  # a wide key at 10,000 events/s: 625 WCU/s on each shard
WIDE_RATE = 100  # events/s one writer puts on a narrow key before it makes the key wide
WIDE_PARTITION = "wide"
WIDE_ENTITY, WIDE_TIME, WIDE_INGEST = "e", "t", "i"  # by_entity, time bundles, by_ingest keys
NEAR_DAYS = 2  # a first copy up to this many days late is read from its bundles by ingest day
# What the entity index carries besides their keys: all a replay message, a processor
# window read and the investigations need, so a selection is Queries alone (no BatchGetItem of
# identity items after them). Provenance, idempotency key and fingerprint stay on the table.
SELECT_INCLUDES = (
    "source",
    "event_type",
    "ingest_time",
    "lag_ms",
    "payload_bytes",
    "archive_bucket",
    "archive_key",
    "archive_position",
)
# What an entry's keys already say, which a reader puts back (``restore_entry``): the event
# time (``time_key``), the entity (``ek``) and the status (an identity item is ACCEPTED).
DERIVED = ("entity_id", "event_time", "status")
SHARD_KEYS = frozenset({"ek", "op"})  # index keys that carry a shard number
SELECT_ATTRIBUTES = frozenset({"event_id", "item", "time_key", "ek", *SELECT_INCLUDES, *DERIVED})
LEGACY_INDEXES = frozenset(  # older layouts' GSIs (1: the first five, 2: by_time): bootstrap
    {"by_source_type_day", "by_source_day", "by_type_day", "by_lag", "by_ingest_day", "by_time"}
)


def shard_of(text: str, shards: int) -> int:
    """A stable shard for an identity: the same text always lands on the same key."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % shards


def _join(*parts: str | int) -> str:
    return "#".join(str(p) for p in parts)


def _shards(wide: bool) -> range:
    return range(WIDE_SHARDS) if wide else range(1)


def entity_keys(entity_id: str, *, wide: bool = False) -> list[str]:
    return [_join(entity_id, n) for n in _shards(wide)]


def wide_key(kind: str, *names: str) -> dict[str, str]:
    """The table key of a wide mark: ``kind`` is ``WIDE_ENTITY`` (names: the entity) or
    ``WIDE_TIME`` (names: source, event type). Hashed: a sort key holds at most 1,024 bytes."""
    digest = hashlib.sha256(json.dumps(list(names)).encode()).hexdigest()[:32]
    return {"event_id": WIDE_PARTITION, "item": f"{kind}#{digest}"}


def wide_item(kind: str, *names: str) -> dict[str, Any]:
    return {**wide_key(kind, *names), "kind": kind, "names": list(names)}


def restore_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A ``by_entity`` entry or identity item with what its keys carry put back (``restore``)."""
    return restore(entry)


def restore(item: dict[str, Any]) -> dict[str, Any]:
    """An item as read, with what ``stored`` left out put back (in place; items of older
    layouts, and attributes a projection left out, stay as they are)."""
    kind = str(item.get("item", ""))
    if kind == IDENTITY_ITEM:
        if "time_key" in item:
            item.setdefault("event_time", str(item["time_key"]).rsplit("#", 1)[0])
        if "ek" in item:
            item.setdefault("entity_id", str(item["ek"]).rsplit("#", 1)[0])
        item.setdefault("status", "ACCEPTED")
        key = item.get("archive_key")
        if isinstance(key, str) and not key.startswith(_ARCHIVE_ROOTS):
            full = _full_archive_key(item, key)
            if full is not None:
                item["archive_key"] = full
    elif kind.startswith(OCCURRENCE_PREFIX):
        occurrence = kind[len(OCCURRENCE_PREFIX) :]
        item.setdefault("occurrence_id", occurrence)
        provenance = item.get("provenance")
        if isinstance(provenance, dict) and "occurrence_id" not in provenance:
            item["provenance"] = {"occurrence_id": occurrence, **provenance}
    return item


def stored(item: Mapping[str, Any]) -> dict[str, Any]:
    """An identity or occurrence item as written: without what its keys already say (an
    identity's event time, entity and status; an occurrence's id) and with its archive key
    relative to what its source, event type and ingest hour say, so that its table item and its
    index entries are ~150 bytes smaller. ``restore`` gives the item back exactly (checked
    here: anything it would not is written whole)."""
    kind = str(item.get("item", ""))
    out = dict(item)
    if kind == IDENTITY_ITEM:
        for name in DERIVED:
            out.pop(name, None)
        key = str(item.get("archive_key", ""))
        for prefix in _archive_prefixes(item):
            if key.startswith(prefix):
                out["archive_key"] = key[len(prefix) :]
                break
    elif kind.startswith(OCCURRENCE_PREFIX):
        out.pop("occurrence_id", None)
        provenance = item.get("provenance")
        if isinstance(provenance, dict):
            out["provenance"] = {k: v for k, v in provenance.items() if k != "occurrence_id"}
    else:
        return out
    return out if restore(dict(out)) == item else dict(item)  # restore replaces, never mutates


_ARCHIVE_ROOTS = (RAW_PREFIX + "/", QUARANTINE_PREFIX + "/")


def _archive_prefixes(item: Mapping[str, Any]) -> list[str]:
    """The archive key prefixes an identity item's own attributes say, longest first: the
    partition of its source and type, then of its ingest hour."""
    source, event_type, ingest = item.get("source"), item.get("event_type"), item.get("ingest_time")
    if not isinstance(source, str) or not isinstance(event_type, str):
        return []
    pair = f"{RAW_PREFIX}/source={escape_segment(source)}/event_type={escape_segment(event_type)}/"
    if not isinstance(ingest, str):
        return [pair]
    return [f"{pair}ingest_date={ingest[:10]}/hour={ingest[11:13]}/", pair]


def _full_archive_key(item: Mapping[str, Any], short: str) -> str | None:
    prefixes = _archive_prefixes(item)
    if short.startswith("ingest_date="):
        return prefixes[-1] + short if prefixes else None
    return prefixes[0] + short if len(prefixes) == 2 else None


def ingest_keys(source: str, day: str, *, wide: bool = False) -> list[str]:
    return [_join(source, day, n) for n in _shards(wide)]


def provenance_map(p: Provenance) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in Provenance.__slots__:
        value = getattr(p, name)
        if value is None:
            continue
        out[name] = format_time(value) if isinstance(value, datetime) else value
    return out


def identity_keys(
    event_id: str,
    source: str,
    event_type: str,
    entity_id: str,
    event_time: str,
    ingest_time: str,
    first_occurrence: str,
    *,
    wide_entity: bool = False,
) -> dict[str, str]:
    """The index keys of an identity item (times as ``format_time`` text): shard 0 of a narrow
    entity, the identity's own shard of a wide one. A first copy whose event day is not one of its
    ingest day's ``near_days`` is in ``by_ingest`` too, so that reading one ingest day's
    deliveries never needs a Query per event day a broken producer clock may have made up."""
    entity_shard = shard_of(event_id, WIDE_SHARDS) if wide_entity else 0
    keys = {"time_key": f"{event_time}#{event_id}", "ek": _join(entity_id, entity_shard)}
    if event_time[:10] not in near_days(ingest_time[:10]):  # very late, or from the future
        keys |= occurrence_keys(source, ingest_time, first_occurrence)
    return keys


def near_days(ingest_day: str) -> list[str]:
    """The event days whose first copies ingested on ``ingest_day`` the readers of deliveries
    find in the time bundles (``NEAR_DAYS`` before it, and the day itself)."""
    day = date.fromisoformat(ingest_day)
    return [str(day - timedelta(days=n)) for n in range(NEAR_DAYS, -1, -1)]


def occurrence_keys(
    source: str, ingest_time: str, occurrence_id: str, *, wide: bool = False
) -> dict[str, str]:
    shard = shard_of(occurrence_id, WIDE_SHARDS) if wide else 0
    return {
        "op": _join(source, ingest_time[:10], shard),
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

    select = {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(SELECT_INCLUDES)}
    attrs = [
        {"AttributeName": name, "AttributeType": "S"}
        for name in ("ek", "time_key", "op", "occ_key")
    ]
    indexes = [
        gsi(INDEX_BY_ENTITY, "ek", "time_key", select),
        gsi(INDEX_BY_INGEST, "op", "occ_key", {"ProjectionType": "ALL"}),
    ]
    return attrs, indexes


def merge_sorted(
    streams: Iterable[Iterator[dict[str, Any]]], key: Callable[[dict[str, Any]], str]
) -> Iterator[dict[str, Any]]:
    """Items of several sorted streams (one per shard) as one sorted stream, read lazily."""
    return heapq.merge(*streams, key=key)
