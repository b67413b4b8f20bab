"""``explain``: everything the kit knows about one event id, from the index and the archive.

The document keeps its original keys (``event_id``, ``status``, ``duplicates``, ``event``: the
identity item with its archived record, ``occurrences``: the duplicate and rejected occurrence
items with theirs) and adds:

* ``deliveries``: every delivery in arrival order — the first (from the identity item) and each
  duplicate or rejection — with arrival time, provenance (HTTP request, or stream / shard /
  sequence / sub-sequence / partition key / arrival timestamp), status and reason, lag, archive
  location and the schema fingerprint its payload was validated against;
* ``summary``: first and last arrival, deliveries per status;
* ``replays`` and ``aggregate_versions``: from an ``EventLineage`` when one is given, else
  ``None`` (not tracked; never an empty list, which would claim "none").
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Protocol

from infra.archive import ArchivePointer, ArchiveReader
from infra.errors import NotFound
from infra.index import EventIndex
from infra.index_layout import SHARD_KEYS, provenance_map
from schemas.codec import ArchiveRecord
from schemas.envelope import Status, format_time

__all__ = ["EventLineage", "explain", "record_json"]


class EventLineage(Protocol):
    """What happened to an event after ingest: the replays that re-emitted it and the aggregate
    versions that included it (``pik.lineage.StoreLineage``). ``event`` is the identity item
    (or, for an event only ever rejected, its first delivery). ``None`` means not tracked."""

    def replays(self, event: Mapping[str, Any]) -> list[dict[str, Any]] | None: ...

    def aggregate_versions(self, event: Mapping[str, Any]) -> list[dict[str, Any]] | None: ...


def record_json(record: ArchiveRecord) -> dict[str, Any]:
    """An archived record as JSON: raw bytes as text when they are UTF-8, else base64."""
    row = record.to_avro()
    raw: bytes = row.pop("raw")
    try:
        row["raw"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        row["raw_base64"] = base64.b64encode(raw).decode("ascii")
    for key, value in row.items():
        if hasattr(value, "tzinfo"):
            row[key] = format_time(value)
    return row


def _pointer(item: dict[str, Any]) -> ArchivePointer | None:
    if "archive_key" not in item:
        return None
    return ArchivePointer(item["archive_bucket"], item["archive_key"], item["archive_position"])


def _plain(value: Any) -> Any:
    """JSON-ready: DynamoDB gives nested numbers (a Kinesis sub-sequence number inside
    ``provenance``) as Decimal."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return value


def _with_record(item: dict[str, Any], reader: ArchiveReader) -> dict[str, Any]:
    # The index keys say where the item is stored (which shard), not what happened to it.
    out: dict[str, Any] = _plain({k: v for k, v in item.items() if k not in SHARD_KEYS})
    pointer = _pointer(item)
    if pointer is not None:
        out["archive"] = pointer.to_json()
        try:
            record = reader.read(pointer)
            out["record"] = record_json(record)
            # An identity item keeps its first delivery's id, not its provenance: the archived
            # record holds that (stream, shard, sequence, or HTTP request).
            out.setdefault("provenance", _plain(provenance_map(record.provenance)))
        except NotFound as exc:
            out["record_error"] = str(exc)
    return out


def _delivery(item: dict[str, Any], *, first: bool) -> dict[str, Any]:
    """One delivery of the event, from its index item (with the archived record attached)."""
    record = item.get("record") or {}
    archive = item.get("archive")
    if archive is not None:
        archive = {**archive, "uri": f"s3://{archive['bucket']}/{archive['key']}"}
    return {
        "occurrence_id": item["first_occurrence"] if first else item.get("occurrence_id"),
        "first": first,
        "status": item.get("status"),
        "reason": item.get("reason"),
        "detail": item.get("detail"),
        "arrived": item.get("ingest_time"),
        "event_time": item.get("event_time"),
        "lag_ms": item.get("lag_ms"),
        "provenance": item.get("provenance") or {},
        "archive": archive,
        "schema_fingerprint": item.get("schema_fingerprint") or record.get("schema_fingerprint"),
        "record_error": item.get("record_error"),
    }


def _deliveries(
    event: dict[str, Any] | None, occurrences: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    rows = [_delivery(event, first=True)] if event else []
    rows += [_delivery(o, first=False) for o in occurrences]
    return sorted(rows, key=lambda d: (d["arrived"] or "", not d["first"]))


def _summary(deliveries: list[dict[str, Any]]) -> dict[str, Any]:
    arrivals = [d["arrived"] for d in deliveries if d["arrived"]]
    counts = Counter(str(d["status"]) for d in deliveries)
    return {
        "deliveries": len(deliveries),
        **{s.value.lower(): counts.get(s.value, 0) for s in Status},
        "first_arrival": min(arrivals) if arrivals else None,
        "last_arrival": max(arrivals) if arrivals else None,
    }


def explain(
    event_id: str,
    index: EventIndex,
    reader: ArchiveReader,
    lineage: EventLineage | None = None,
) -> dict[str, Any]:
    """The event's index item, every delivery (first, duplicates, rejections) with its archived
    record, and — when ``lineage`` is given — the replays and aggregate versions it reached."""
    item = index.get(event_id)
    occurrences = index.occurrences(event_id)
    if item is None and not occurrences:
        raise NotFound(f"no event {event_id} in the index")
    status = item["status"] if item else occurrences[0]["status"]
    event = _with_record(item, reader) if item else None
    others = [_with_record(o, reader) for o in occurrences]
    deliveries = _deliveries(event, others)
    subject = {**(item or occurrences[0]), "event_id": event_id}
    return {
        "event_id": event_id,
        "status": status,
        "duplicates": len(item.get("dup_occurrences", [])) if item else 0,
        "event": event,
        "occurrences": others,
        "deliveries": deliveries,
        "summary": _summary(deliveries),
        "replays": lineage.replays(subject) if lineage else None,
        "aggregate_versions": lineage.aggregate_versions(subject) if lineage else None,
    }
