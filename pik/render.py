"""Human renderings of command results (``--json`` prints the documents themselves)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = [
    "human_ms",
    "print_table",
    "provenance_text",
    "render_explain",
    "short_time",
    "status_markup",
]

_STATUS_STYLE = {"ACCEPTED": "green", "DUPLICATE": "yellow", "REJECTED": "red"}
# (shown from, unit size, unit): days only from two days on, so "34.9 h" not "1.5 d"
_UNITS = (
    (172_800_000, 86_400_000, "d"),
    (3_600_000, 3_600_000, "h"),
    (60_000, 60_000, "min"),
    (1_000, 1_000, "s"),
)


def status_markup(value: str) -> str:
    style = _STATUS_STYLE.get(value, "white")
    return f"[{style}]{value}[/{style}]"


def human_ms(ms: int | float | None) -> str:
    """A duration in the unit a person would say: ``850 ms``, ``12.3 s``, ``6.2 h``, ``3.1 d``."""
    if ms is None:
        return ""
    sign = "-" if ms < 0 else ""
    size = abs(ms)
    for shown_from, unit_ms, unit in _UNITS:
        if size >= shown_from:
            return f"{sign}{size / unit_ms:.1f} {unit}"
    return f"{sign}{size:.0f} ms"


def provenance_text(provenance: dict[str, Any]) -> str:
    """Where a delivery came from, in one line."""
    if provenance.get("stream"):
        seq = provenance.get("sequence_number", "?")
        sub = provenance.get("sub_sequence_number")
        where = f"{provenance['stream']}/{provenance.get('shard_id', '?')} seq {seq}"
        if sub is not None:
            where += f".{sub}"
        if provenance.get("partition_key"):
            where += f" key {provenance['partition_key']}"
        return where
    if provenance.get("request_id"):
        return f"{provenance.get('origin', 'http')} request {provenance['request_id']}"
    return str(provenance.get("occurrence_id", ""))


def short_time(text: str | None) -> str:
    """``2025-12-27T10:05:00.000000Z`` as ``2025-12-27 10:05:00``."""
    return (text or "")[:19].replace("T", " ")


def print_table(console: Console, table: Table) -> None:
    """A table when it fits the terminal whole; otherwise (piped, or too narrow) one block per
    row, ``header: value`` a line, never cut or wrapped, so ids and keys can be copied."""
    if console.is_terminal:
        options = console.options.update(no_wrap=True)
        if table.__rich_measure__(console, options).maximum <= console.width:
            console.print(table)
            return
    headers = [str(column.header) for column in table.columns]
    cells = [list(column.cells) for column in table.columns]
    width = max((len(h) for h in headers), default=0)
    if table.title:
        console.print(f"[bold]{table.title}[/bold]", highlight=False, soft_wrap=True)
    for index in range(table.row_count):
        for header, column in zip(headers, cells, strict=True):
            cell = column[index] if index < len(column) else ""
            if isinstance(cell, Text):
                line = Text(f"  {header:{width}}  ")
                line.append_text(cell)
                console.print(line, highlight=False, soft_wrap=True)
            elif str(cell):
                console.print(f"  {header:{width}}  {cell}", highlight=False, soft_wrap=True)
        if index < table.row_count - 1:
            console.print()


def _deliveries_table(deliveries: list[dict[str, Any]]) -> Table:
    """Every delivery, one row each; the reason and schema columns only when some row has one."""
    show_reason = any(d.get("reason") for d in deliveries)
    show_schema = any(d.get("schema_fingerprint") for d in deliveries)
    table = Table(title=f"deliveries ({len(deliveries)})")
    table.add_column("arrived", no_wrap=True)
    table.add_column("status", no_wrap=True)
    if show_reason:
        table.add_column("reason")
    table.add_column("lag", no_wrap=True)
    table.add_column("from", overflow="fold")
    table.add_column("archived at", overflow="fold")
    if show_schema:
        table.add_column("schema", overflow="fold")
    for d in deliveries:
        archive = d.get("archive") or {}
        row = [
            short_time(d.get("arrived")),
            status_markup(str(d.get("status"))) + (" (first)" if d.get("first") else ""),
        ]
        if show_reason:
            row.append(d.get("reason") or "")
        row += [
            human_ms(d.get("lag_ms")),
            provenance_text(d.get("provenance") or {}),
            f"{archive.get('key', '?')} #{archive.get('position', '?')}",
        ]
        if show_schema:
            row.append(d.get("schema_fingerprint") or "")
        table.add_row(*row)
    return table


def render_explain(console: Console, doc: dict[str, Any]) -> None:
    console.print(f"event {doc['event_id']}  {status_markup(doc['status'])}")
    event = doc.get("event")
    if event:
        rows = [
            ("source / type", f"{event['source']} / {event['event_type']}"),
            ("entity", event["entity_id"]),
            ("event time", event["event_time"]),
            ("ingested", event["ingest_time"]),
            ("lag", f"{event['lag_ms']:,} ms ({human_ms(event['lag_ms'])})"),
            ("first delivery", event["first_occurrence"]),
            ("duplicates", str(doc["duplicates"])),
        ]
        if event.get("schema_fingerprint"):
            rows.append(("schema", event["schema_fingerprint"]))
        if "archive" in event:
            a = event["archive"]
            rows.append(("archived at", f"s3://{a['bucket']}/{a['key']} #{a['position']}"))
        for name, value in rows:
            console.print(f"  {name:15} {value}", highlight=False)
        record = event.get("record")
        if record:
            raw = record.get("raw", record.get("raw_base64", ""))
            console.print(f"  {'raw bytes':15} {raw}", highlight=False, markup=False)
    deliveries = doc.get("deliveries")
    if deliveries is None:  # a document from before deliveries were listed
        deliveries = [
            {**o, "arrived": o.get("ingest_time"), "first": False}
            for o in doc.get("occurrences") or []
        ]
    if deliveries:
        print_table(console, _deliveries_table(deliveries))
    for key, label in (("replays", "replays"), ("aggregate_versions", "aggregate versions")):
        if key not in doc:
            continue
        value = doc[key]
        if value is None:
            console.print(f"  {label}: not tracked yet", style="dim")
            continue
        console.print(f"  {label}: {len(value)}", highlight=False)
        for row in value:
            console.print(f"    {_lineage_line(key, row)}", highlight=False, markup=False)


def _lineage_line(key: str, row: dict[str, Any]) -> str:
    if key == "replays":
        times = "" if row.get("sent", 0) <= 1 else f" {row['sent']} times"
        line = (
            f"{row['replay_id']} {row['status']} by {row['requester']} → {row['target']}: "
            f"sent{times} at {row.get('first_sent_at')}"
        )
        return line if row.get("log_complete", True) else line + " (log too long to search)"
    latest = "latest" if row.get("is_latest") else f"superseded by v{row.get('latest_version')}"
    return (
        f"{row['metric']} {row['day']} v{row['version']} = {row['value']} "
        f"({row['input_count']} inputs, {latest}; replay {row.get('replay_id') or '-'})"
    )
