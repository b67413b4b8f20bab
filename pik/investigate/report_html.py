"""The HTML investigation report: one self-contained page (inline CSS and SVG, no scripts, no
links out) with events per hour and their gaps, lateness, rejections and duplicate storms."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape

from pik.investigate.audit import AuditReport
from pik.investigate.gaps import Axis, GapKind, GapReport, GapSeries
from pik.investigate.lag import LagReport
from pik.investigate.service import InvestigationReport
from pik.investigate.svg import Mark, column_chart, row_chart
from pik.investigate.window import iso
from pik.render import human_ms

__all__ = ["render_report"]

REPORT_LATEST = 10  # latest arrivals listed (the JSON of `pik lag` has more)

_CSS = """
:root { color-scheme: light; --ink: #1d2330; --muted: #5f6b7a; --line: #d9dee5;
  --bar: #3b6fb6; --alt: #e08a1e; --bad: #c8372d; --low: #f0b429; --ok: #2f8f4e; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
  margin: 0 auto; max-width: 980px; padding: 24px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px;
  border-bottom: 1px solid var(--line); padding-bottom: 4px; } h3 { font-size: 14px; margin: 16px 0 4px; }
.muted, footer { color: var(--muted); }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 16px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; min-width: 130px; }
.card b { display: block; font-size: 20px; } .card.bad b { color: var(--bad); }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }
th, td { text-align: left; padding: 3px 10px 3px 0; border-bottom: 1px solid var(--line); }
td.n, th.n { text-align: right; } td { vertical-align: top; } code { font-size: 12px; }
td.id { font: 11px ui-monospace, monospace; word-break: break-all; }
svg.chart { max-width: 100%; height: auto; display: block; }
svg .bar { fill: var(--bar); } svg .bar-alt { fill: var(--alt); }
svg .bar-partial { fill: var(--bar); opacity: .4; }
svg .mark-missing { fill: var(--bad); opacity: .18; } svg .mark-low { fill: var(--low); opacity: .25; }
svg .mark-storm { fill: var(--alt); opacity: .18; }
svg .baseline { stroke: var(--ok); stroke-dasharray: 5 4; stroke-width: 1.5; }
svg .axis { stroke: var(--muted); } svg .grid { stroke: var(--line); }
svg .label { fill: var(--muted); font-size: 11px; }
.legend span { margin-right: 14px; } .sw { display: inline-block; width: 10px; height: 10px;
  margin-right: 4px; vertical-align: middle; }
.ok { color: var(--ok); } .bad { color: var(--bad); }
"""


def _table(
    head: Sequence[str],
    rows: Iterable[Sequence[object]],
    numeric: set[int],
    ids: frozenset[int] = frozenset(),
) -> str:
    """A table; columns in ``numeric`` align right, columns in ``ids`` are monospace ids."""

    def css(i: int) -> str:
        return ' class="n"' if i in numeric else ' class="id"' if i in ids else ""

    cells = "".join(f"<th{css(i)}>{escape(h)}</th>" for i, h in enumerate(head))
    body = [
        "<tr>" + "".join(f"<td{css(i)}>{escape(str(v))}</td>" for i, v in enumerate(row)) + "</tr>"
        for row in rows
    ]
    if not body:
        return '<p class="muted">none</p>'
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _hour_labels(starts: Sequence[datetime]) -> list[str]:
    """Each hour's full name, for its bar's tooltip: ``2025-12-28 05:00 UTC``."""
    return [t.strftime("%Y-%m-%d %H:%M UTC") for t in starts]


def _hour_ticks(starts: Sequence[datetime]) -> list[tuple[int, str]]:
    """Axis labels: every 6 hours on a short chart, every midnight on a long one; each midnight
    and the first label carry the date (``12-28``), so a week never reads "18:00" seven times."""
    every = 6 if len(starts) <= 72 else 24
    ticks = [i for i, t in enumerate(starts) if t.hour % every == 0]
    if starts and (not ticks or ticks[0] > every // 2):
        ticks.insert(0, 0)
    out = []
    for n, i in enumerate(ticks):
        t = starts[i]
        if t.hour == 0:
            out.append((i, t.strftime("%m-%d")))
        else:
            out.append((i, t.strftime("%m-%d %H:%M") if n == 0 else t.strftime("%H:%M")))
    return out


def _short_time(text: str) -> str:
    """``2025-12-27T10:05:00.000000Z`` as ``2025-12-27 10:05:00``."""
    return text[:19].replace("T", " ")


def _cards(report: InvestigationReport) -> str:
    audit, gaps, lag = report.audit, report.gaps, report.lag
    t = audit.totals
    found = gaps.found
    worst = max((g.stats.p99_ms for g in lag.overall), default=None)
    by_event, by_arrival = f"by {Axis.EVENT.value} time", f"by {Axis.ARRIVAL.value}"
    cards = [
        ("deliveries", by_arrival, f"{sum(t.values()):,}", False),
        ("accepted", by_arrival, f"{t['ACCEPTED']:,}", False),
        ("events", f"by {gaps.axis.value} time", f"{_events_total(gaps):,}", False),
        ("duplicate rate", by_arrival, f"{audit.duplicate_rate * 100:.1f} %", bool(audit.storms)),
        ("rejected", by_arrival, f"{t['REJECTED']:,}", t["REJECTED"] > 0),
        ("gaps", f"by {gaps.axis.value} time", str(found), found > 0),
        ("worst p99 lag", by_event, human_ms(worst) if worst is not None else "-", False),
        ("duplicate storms", by_arrival, str(len(audit.storms)), bool(audit.storms)),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card{" bad" if bad else ""}">{escape(name)}<b>{escape(value)}</b>'
            f'<small class="muted axis">{escape(axis)}</small></div>'
            for name, axis, value, bad in cards
        )
        + "</div>"
    )


def _events_total(gaps: GapReport) -> int:
    """Events the charts hold: per source its all-types series, or its one series."""
    per_source: dict[str, int] = {}
    for s in gaps.series:
        if s.event_type is None or s.source not in per_source:
            per_source[s.source] = s.total
    return sum(per_source.values())


def _series_chart(series: GapSeries, axis: Axis) -> str:
    starts = [b.start for b in series.buckets]
    index = {b.start: i for i, b in enumerate(series.buckets)}
    marks = []
    for g in series.gaps:
        covered = [i for start, i in index.items() if g.start <= start < g.end]
        if covered:
            css = "mark-missing" if g.kind is GapKind.MISSING else "mark-low"
            title = f"{g.kind.value}: {iso(g.start)} to {iso(g.end)}, {g.count} events"
            marks.append(Mark(covered[0], covered[-1], css, title))
    name = f"{series.source} / {series.event_type or 'all types'}"
    return column_chart(
        [b.count for b in series.buckets],
        _hour_labels(starts),
        title=f"events per hour by {axis.value} time, {name}",
        marks=marks,
        partial=[i for i, b in enumerate(series.buckets) if b.partial],
        ticks=_hour_ticks(starts),
        baseline=series.baseline or None,
    )


def _events_section(gaps: GapReport) -> str:
    by = f"{gaps.axis.value} time" if gaps.axis is Axis.EVENT else "arrival (ingest time)"
    parts = [
        f"<h2 id=events>Events per hour (by {by})</h2>",
        '<p class="legend"><span><i class="sw" style="background:#3b6fb6"></i>events</span>'
        '<span><i class="sw" style="background:#3b6fb6;opacity:.4"></i>partial hour '
        "(so far)</span>"
        '<span><i class="sw" style="background:#f3c9c5"></i>missing</span>'
        '<span><i class="sw" style="background:#fbe5a9"></i>far below usual</span>'
        '<span><i class="sw" style="border-top:2px dashed #2f8f4e;height:0"></i>usual '
        "(median hour since the series' first events)</span> flagged under "
        f"{gaps.threshold:.0%} of usual; hours in UTC</p>",
    ]
    for s in gaps.series:
        if s.no_data:
            continue
        name = f"{s.source} / {s.event_type or 'all types'}"
        parts.append(f"<h3>{escape(name)}: {s.total:,} events</h3>")
        parts.append(_series_chart(s, gaps.axis))
        last = s.buckets[-1]
        if last.partial:
            parts.append(
                f'<p class="muted partial">partial hour {iso(last.start)} to '
                f"{iso(gaps.window.end)}: {last.count:,} events so far, not judged</p>"
            )
        if s.data_from is not None and s.data_from != s.buckets[0].start:
            parts.append(
                f'<p class="muted">first events at {iso(s.data_from)}: usual level and gaps '
                "from there on</p>"
            )
        rows = [
            (g.kind.value, iso(g.start), iso(g.end), g.count, f"{g.expected:g}") for g in s.gaps
        ]
        if rows:
            parts.append(_table(("gap", "from", "to", "events", "usual"), rows, {3, 4}))
        else:
            parts.append('<p class="ok">no gaps</p>')
    if gaps.no_data:
        names = ", ".join(f"{s.source} / {s.event_type or 'all types'}" for s in gaps.no_data)
        parts.append(f'<p class="muted no-data">no data in window (by {by}): {escape(names)}</p>')
    return "".join(parts)


def _lag_section(lag: LagReport) -> str:
    parts = [f"<h2 id=lag>Lateness (ingest time minus event time), by {lag.axis.value} time</h2>"]
    if not lag.overall:
        return parts[0] + '<p class="muted">no events in the window</p>'
    for g in lag.overall:
        parts.append(f"<h3>{escape(g.source)} / {escape(g.event_type)}</h3>")
        parts.append(row_chart(g.histogram, title=f"lag distribution {g.source}/{g.event_type}"))
    rows = [
        (
            g.source,
            g.event_type,
            g.day or "all",
            g.stats.count,
            human_ms(g.stats.p50_ms),
            human_ms(g.stats.p95_ms),
            human_ms(g.stats.p99_ms),
            human_ms(g.stats.max_ms),
        )
        for g in [*lag.overall, *lag.by_day]
    ]
    parts.append(
        _table(("source", "type", "event day", "events", "p50", "p95", "p99", "max"), rows,
               {3, 4, 5, 6, 7})
    )  # fmt: skip
    parts.append("<h3>Latest arrivals</h3>")
    parts.append(
        _table(
            ("lag", "event time", "arrived", "source / type", "entity", "event id"),
            (
                (human_ms(e.lag_ms), _short_time(e.event_time), _short_time(e.ingest_time),
                 f"{e.source}/{e.event_type}", e.entity_id, e.event_id)
                for e in lag.latest[:REPORT_LATEST]
            ),
            {0},
            frozenset({5}),
        )
    )  # fmt: skip
    return "".join(parts)


def _rejections_section(audit: AuditReport) -> str:
    parts = ["<h2 id=rejections>Rejections by reason</h2>"]
    if not audit.reasons:
        return parts[0] + '<p class="ok">no rejections</p>'
    parts.append(
        row_chart([(r.reason, r.count) for r in audit.reasons], title="rejections", css="bar-alt")
    )
    rows = [
        (r.reason, r.count, f"{r.share * 100:.1f} %", ", ".join(r.event_types))
        for r in audit.reasons
    ]
    parts.append(_table(("reason", "count", "share", "event types"), rows, {1, 2}))
    return "".join(parts)


def _duplicates_section(audit: AuditReport) -> str:
    parts = [
        "<h2 id=duplicates>Duplicates per hour (by arrival)</h2>",
        f"<p>{audit.totals['DUPLICATE']:,} duplicates, "
        f"{audit.duplicate_rate * 100:.1f} % of valid deliveries.</p>",
    ]
    starts = [h.hour for h in audit.hourly]
    index = {h.hour: i for i, h in enumerate(audit.hourly)}
    marks = []
    for storm in audit.storms:
        covered = [i for hour, i in index.items() if storm.start <= hour < storm.end]
        if covered:
            title = f"storm: {storm.duplicates} duplicates from {iso(storm.start)}"
            marks.append(Mark(covered[0], covered[-1], "mark-storm", title))
    parts.append(
        column_chart(
            [h.duplicate for h in audit.hourly],
            _hour_labels(starts),
            title="duplicates per hour by arrival",
            marks=marks,
            ticks=_hour_ticks(starts),
            highlight=[i for m in marks for i in range(m.first, m.last + 1)],
        )
    )
    rows = [
        (
            iso(s.start),
            iso(s.end),
            s.duplicates,
            s.accepted,
            f"{s.baseline:g}",
            ", ".join(f"{e[:16]}... x{n}" for e, n in s.top_events),
        )
        for s in audit.storms
    ]
    parts.append("<h3>Duplicate storms</h3>")
    parts.append(
        _table(("from", "to", "duplicates", "new", "usual/h", "most repeated"), rows, {2, 3, 4})
    )
    if audit.top_entities:
        parts.append("<h3>Most troubled entities</h3>")
        parts.append(
            _table(
                ("entity", "source", "duplicate", "rejected"),
                ((e.entity_id, e.source, e.duplicate, e.rejected) for e in audit.top_entities),
                {2, 3},
            )
        )
    return "".join(parts)


def _days_section(audit: AuditReport) -> str:
    rows = [
        (d.source, d.event_type, d.day, d.accepted, d.duplicate, d.rejected) for d in audit.by_day
    ]
    return "<h2 id=days>Deliveries per ingest day</h2>" + _table(
        ("source", "event type", "ingest day", "accepted", "duplicate", "rejected"), rows, {3, 4, 5}
    )


def render_report(report: InvestigationReport) -> str:
    """The report as one HTML document."""
    title = f"pik investigation: {', '.join(report.sources)}"
    cost = {
        k: report.audit.cost.get(k, 0) + report.gaps.cost.get(k, 0) + report.lag.cost.get(k, 0)
        for k in ("queries", "scanned")
    }
    scope = escape(", ".join(report.sources))
    if report.event_type:
        scope += f" / {escape(report.event_type)}"
    return "".join(
        [
            "<!doctype html>\n<html lang=en><head><meta charset=utf-8>",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
            "<header><h1>Pipeline investigation report</h1>",
            f'<p class="muted">{scope} &middot; {iso(report.window.start)} to '
            f"{iso(report.window.end)} &middot; generated {escape(report.generated_at)}</p>",
            "</header>",
            _cards(report),
            _events_section(report.gaps),
            _lag_section(report.lag),
            _rejections_section(report.audit),
            _duplicates_section(report.audit),
            _days_section(report.audit),
            f"<footer><p>Read with {cost['queries']} index Queries ({cost['scanned']:,} items), "
            "no Scan. Made by <code>pik report</code>.</p></footer>",
            "</body></html>\n",
        ]
    )
