"""``explain``: everything the kit knows about one event id, from the index and the archive."""

from __future__ import annotations

import base64
from typing import Any

from infra.archive import ArchivePointer, ArchiveReader
from infra.errors import NotFound
from infra.index import EventIndex
from schemas.codec import ArchiveRecord
from schemas.envelope import format_time


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


def _with_record(item: dict[str, Any], reader: ArchiveReader) -> dict[str, Any]:
    out = dict(item)
    pointer = _pointer(item)
    if pointer is not None:
        out["archive"] = pointer.to_json()
        try:
            out["record"] = record_json(reader.read(pointer))
        except NotFound as exc:
            out["record_error"] = str(exc)
    return out


def explain(event_id: str, index: EventIndex, reader: ArchiveReader) -> dict[str, Any]:
    """The event's index item, every duplicate or rejected occurrence, and the archived bytes."""
    item = index.get(event_id)
    occurrences = index.occurrences(event_id)
    if item is None and not occurrences:
        raise NotFound(f"no event {event_id} in the index")
    status = item["status"] if item else occurrences[0]["status"]
    return {
        "event_id": event_id,
        "status": status,
        "duplicates": len(item.get("dup_occurrences", [])) if item else 0,
        "event": _with_record(item, reader) if item else None,
        "occurrences": [_with_record(o, reader) for o in occurrences],
    }
