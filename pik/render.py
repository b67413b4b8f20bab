"""Human renderings of command results (``--json`` prints the documents themselves)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

_STATUS_STYLE = {"ACCEPTED": "green", "DUPLICATE": "yellow", "REJECTED": "red"}


def _status(value: str) -> str:
    style = _STATUS_STYLE.get(value, "white")
    return f"[{style}]{value}[/{style}]"


def render_explain(console: Console, doc: dict[str, Any]) -> None:
    console.print(f"event {doc['event_id']}  {_status(doc['status'])}")
    event = doc.get("event")
    if event:
        rows = [
            ("source / type", f"{event['source']} / {event['event_type']}"),
            ("entity", event["entity_id"]),
            ("event time", event["event_time"]),
            ("ingested", event["ingest_time"]),
            ("lag", f"{event['lag_ms']:,} ms"),
            ("first delivery", event["first_occurrence"]),
            ("duplicates", str(doc["duplicates"])),
        ]
        if "archive" in event:
            a = event["archive"]
            rows.append(("archived at", f"s3://{a['bucket']}/{a['key']} #{a['position']}"))
        for name, value in rows:
            console.print(f"  {name:15} {value}", highlight=False)
        record = event.get("record")
        if record:
            raw = record.get("raw", record.get("raw_base64", ""))
            console.print(f"  {'raw bytes':15} {raw}", highlight=False, markup=False)
    occurrences = doc.get("occurrences") or []
    if occurrences:
        table = Table(
            "status", "reason", "delivery", "ingested", "archive", title="other deliveries"
        )
        for o in occurrences:
            archive = o.get("archive", {})
            where = f"{archive.get('key', '?')} #{archive.get('position', '?')}"
            table.add_row(
                _status(o["status"]),
                o.get("reason") or "",
                o["occurrence_id"],
                o["ingest_time"],
                where,
            )
        console.print(table)
