"""Readable terminal renderings of ``audit``, ``gaps`` and ``lag`` (``--json`` prints the
documents instead)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from pik.investigate.audit import AuditReport
from pik.investigate.gaps import GapKind, GapReport, GapSeries
from pik.investigate.lag import LagReport
from pik.investigate.window import Window, iso
from pik.render import human_ms, print_table, short_time

__all__ = ["render_audit", "render_gaps", "render_lag", "sparkline"]

_BARS = "▁▂▃▄▅▆▇█"
MAX_SPARKLINE = 240  # buckets; a longer series is summarised by its gaps only


def _header(console: Console, what: str, window: Window, sources: list[str]) -> None:
    console.print(
        f"[bold]{what}[/bold]  {', '.join(sources) or '-'}  "
        f"{iso(window.start)} → {iso(window.end)}",
        highlight=False,
    )


def _cost(console: Console, cost: dict[str, int]) -> None:
    if cost:
        console.print(
            f"[dim]{cost.get('queries', 0)} {'query' if cost.get('queries') == 1 else 'queries'}, "
            f"{cost.get('scanned', 0):,} index items read[/dim]"
        )


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def render_audit(console: Console, report: AuditReport) -> None:
    _header(console, "audit", report.window, report.sources)
    t = report.totals
    console.print(
        f"{sum(t.values()):,} deliveries: [green]{t['ACCEPTED']:,} accepted[/green], "
        f"[yellow]{t['DUPLICATE']:,} duplicate[/yellow] ({_pct(report.duplicate_rate)} of valid), "
        f"[red]{t['REJECTED']:,} rejected[/red] ({_pct(report.rejection_rate)})",
        highlight=False,
    )
    if report.by_day:
        table = Table("source", "event type", "ingest day", "accepted", "duplicate", "rejected")
        for d in report.by_day:
            table.add_row(
                d.source,
                d.event_type,
                d.day,
                f"{d.accepted:,}",
                f"{d.duplicate:,}" if d.duplicate else "",
                f"[red]{d.rejected:,}[/red]" if d.rejected else "",
            )
        print_table(console, table)
    if report.reasons:
        table = Table("reason", "count", "share", "event types", title="rejections by reason")
        for r in report.reasons:
            table.add_row(r.reason, f"{r.count:,}", _pct(r.share), ", ".join(r.event_types))
        print_table(console, table)
    if report.top_entities:
        table = Table("entity", "source", "duplicate", "rejected", title="most troubled entities")
        for e in report.top_entities:
            table.add_row(e.entity_id, e.source, str(e.duplicate), str(e.rejected))
        print_table(console, table)
    if report.sampled:
        console.print(
            f"(entities and storms' events from the first {report.troubled_read:,} of "
            f"{report.troubled:,} duplicate and rejected deliveries; the counts are complete)",
            highlight=False,
        )
    for storm in report.storms:
        console.print(
            f"[yellow]duplicate storm[/yellow] {iso(storm.start)} → {iso(storm.end)}: "
            f"{storm.duplicates:,} duplicates vs {storm.accepted:,} new "
            f"(usually {storm.baseline:g}/h); most repeated:",
            highlight=False,
        )
        for event_id, n in storm.top_events:  # whole ids: 64 characters and the count fit 80
            console.print(f"  {event_id} x{n}", highlight=False, soft_wrap=True)
    _cost(console, report.cost)


def sparkline(series: GapSeries) -> str:
    """One character per bucket; flagged buckets in red."""
    peak = max((b.count for b in series.buckets), default=0)
    flagged = {
        b.start: g.kind for g in series.gaps for b in series.buckets if g.start <= b.start < g.end
    }
    chars = []
    for b in series.buckets:
        level = 0 if peak == 0 else min(len(_BARS) - 1, b.count * (len(_BARS) - 1) // peak)
        char = " " if b.count == 0 else _BARS[level]
        kind = flagged.get(b.start)
        if b.partial:
            chars.append(f"[dim]{char if b.count else '·'}[/dim]")
        elif kind is GapKind.MISSING:
            chars.append("[on red] [/on red]")
        elif kind is GapKind.LOW:
            chars.append(f"[red]{char}[/red]")
        else:
            chars.append(char)
    return "".join(chars)


def render_gaps(console: Console, report: GapReport) -> None:
    sources = sorted({s.source for s in report.series})
    _header(console, "gaps", report.window, sources)
    console.print(
        f"by {report.axis.value} time, per {report.granularity.value}; flagged: empty, or under "
        f"{report.threshold:.0%} of the median {report.granularity.value} since the series' "
        f"first events; the unfinished last {report.granularity.value} is partial, never flagged",
        highlight=False,
    )
    for s in report.series:
        if s.no_data:
            continue
        name = f"{s.source} / {s.event_type or 'all types'}"
        first = s.data_from
        since = f" since {iso(first)}" if first and first != s.buckets[0].start else ""
        console.print(
            f"\n[bold]{name}[/bold]  {s.total:,} events, usual {s.baseline:g} per "
            f"{report.granularity.value}{since}",
            highlight=False,
        )
        if 0 < len(s.buckets) <= MAX_SPARKLINE:
            console.print(f"  {sparkline(s)}", highlight=False)
        last = s.buckets[-1] if s.buckets else None
        if last is not None and last.partial:
            console.print(
                f"  partial {report.granularity.value} {iso(last.start)} → "
                f"{iso(report.window.end)}: {last.count:,} events so far",
                highlight=False,
            )
        if not s.gaps:
            console.print("  [green]no gaps[/green]")
        for g in s.gaps:
            style = "red" if g.kind is GapKind.MISSING else "yellow"
            console.print(
                f"  [{style}]{g.kind.value:7}[/{style}] {iso(g.start)} → {iso(g.end)}  "
                f"{g.count:,} events (usually {g.expected:g})",
                highlight=False,
            )
    if report.no_data:
        names = ", ".join(f"{s.source} / {s.event_type or 'all types'}" for s in report.no_data)
        console.print(f"\nno data in window: {names}", highlight=False)
    _cost(console, report.cost)


def render_lag(console: Console, report: LagReport) -> None:
    _header(console, "lag", report.window, report.sources)
    console.print(f"window by {report.axis.value} time", highlight=False)
    if not report.overall:
        console.print("no events in the window")
    for title, groups in (
        ("lateness over the window", report.overall),
        ("by event day", report.by_day),
    ):
        if not groups:
            continue
        table = Table(
            "source", "event type", "day", "events", "p50", "p95", "p99", "max", title=title
        )
        for g in groups:
            s = g.stats
            table.add_row(
                g.source,
                g.event_type,
                g.day or "all",
                f"{s.count:,}",
                human_ms(s.p50_ms),
                human_ms(s.p95_ms),
                human_ms(s.p99_ms),
                f"[bold]{human_ms(s.max_ms)}[/bold]",
            )
        print_table(console, table)
    if report.latest:
        kinds = {(e.source, e.event_type) for e in report.latest}
        title = "latest arrivals"
        if len(kinds) == 1:
            title += " ({} / {})".format(*kinds.pop())
        table = Table(title=title)
        for name in ("lag", "event time", "arrived"):
            table.add_column(name, no_wrap=True)
        if not title.endswith(")"):
            table.add_column("source / type")
        table.add_column("entity", overflow="fold")
        table.add_column("event id", overflow="fold")
        for e in report.latest:
            row = [human_ms(e.lag_ms), short_time(e.event_time), short_time(e.ingest_time)]
            if not title.endswith(")"):
                row.append(f"{e.source} / {e.event_type}")
            table.add_row(*row, e.entity_id, e.event_id)
        print_table(console, table)
    _cost(console, report.cost)
