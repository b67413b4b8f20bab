"""Inline SVG charts for the HTML report, drawn here: no JavaScript, no fonts or files fetched.

Colours come from CSS classes (``bar``, ``bar-alt``, ``bar-partial``, ``mark-missing``,
``mark-low``, ``baseline``, ``axis``, ``label``) that the report's stylesheet defines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["Mark", "column_chart", "row_chart"]

WIDTH = 920
PLOT_LEFT = 48
PLOT_RIGHT = 12
PLOT_TOP = 12
AXIS_ROOM = 28
ROW_HEIGHT = 22
ROW_LABEL_WIDTH = 190


@dataclass(frozen=True, slots=True)
class Mark:
    """A run of columns ``[first, last]`` to shade behind the bars (a gap, a storm)."""

    first: int
    last: int
    css: str
    title: str


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value``."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return float(step * magnitude)
    return float(10 * magnitude)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def column_chart(
    values: Sequence[int],
    labels: Sequence[str],
    *,
    title: str,
    marks: Sequence[Mark] = (),
    highlight: Sequence[int] = (),
    partial: Sequence[int] = (),
    baseline: float | None = None,
    ticks: Sequence[tuple[int, str]] | None = None,
    label_every: int = 24,
    height: int = 200,
) -> str:
    """Vertical bars, one per bucket; ``marks`` shade runs of buckets, ``highlight`` colours
    single bars, ``partial`` draws unfinished buckets apart, ``baseline`` draws a dashed line;
    ``ticks`` are the ``(bucket, text)`` axis labels (by default every ``label_every``-th
    bucket's label); ``labels`` name each bar in its tooltip."""
    n = max(len(values), 1)
    plot_w = WIDTH - PLOT_LEFT - PLOT_RIGHT
    plot_h = height - PLOT_TOP - AXIS_ROOM
    top = _nice_max(max([*values, baseline or 0, 0]))
    step = plot_w / n
    bottom = PLOT_TOP + plot_h

    def y(v: float) -> float:
        return bottom - plot_h * v / top

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}">',
        f"<title>{escape(title)}</title>",
    ]
    for mark in marks:
        x = PLOT_LEFT + mark.first * step
        w = (mark.last - mark.first + 1) * step
        parts.append(
            f'<rect class="{escape(mark.css)}" x="{x:.1f}" y="{PLOT_TOP}" width="{w:.1f}" '
            f'height="{plot_h}"><title>{escape(mark.title)}</title></rect>'
        )
    for fraction in (0.0, 0.5, 1.0):
        gy = y(top * fraction)
        parts.append(
            f'<line class="grid" x1="{PLOT_LEFT}" x2="{WIDTH - PLOT_RIGHT}" '
            f'y1="{gy:.1f}" y2="{gy:.1f}"/>'
            f'<text class="label" x="{PLOT_LEFT - 6}" y="{gy + 4:.1f}" '
            f'text-anchor="end">{_fmt(top * fraction)}</text>'
        )
    wanted, unfinished = set(highlight), set(partial)
    for i, value in enumerate(values):
        if value <= 0:
            continue
        x = PLOT_LEFT + i * step
        css = "bar-partial" if i in unfinished else "bar-alt" if i in wanted else "bar"
        label = escape(labels[i]) if i < len(labels) else ""
        if i in unfinished:
            label += " (partial, so far)"
        parts.append(
            f'<rect class="{css}" x="{x + step * 0.1:.1f}" y="{y(value):.1f}" '
            f'width="{max(step * 0.8, 0.8):.1f}" height="{bottom - y(value):.1f}">'
            f"<title>{label}: {value:,}</title></rect>"
        )
    if baseline:
        by = y(baseline)
        parts.append(
            f'<line class="baseline" x1="{PLOT_LEFT}" x2="{WIDTH - PLOT_RIGHT}" '
            f'y1="{by:.1f}" y2="{by:.1f}"><title>usual: {_fmt(baseline)}</title></line>'
        )
    parts.append(
        f'<line class="axis" x1="{PLOT_LEFT}" x2="{WIDTH - PLOT_RIGHT}" '
        f'y1="{bottom}" y2="{bottom}"/>'
    )
    if ticks is None:
        ticks = [(i, labels[i]) for i in range(0, len(labels), max(label_every, 1))]
    for i, text in ticks:
        x = PLOT_LEFT + i * step
        parts.append(
            f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}"/>'
            f'<text class="label" x="{x:.1f}" y="{bottom + 16}">{escape(text)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def row_chart(rows: Sequence[tuple[str, int]], *, title: str, css: str = "bar") -> str:
    """Horizontal bars with their label and count: rejection reasons, a lag histogram."""
    height = PLOT_TOP * 2 + ROW_HEIGHT * max(len(rows), 1)
    plot_w = WIDTH - ROW_LABEL_WIDTH - PLOT_RIGHT - 70
    top = max([n for _, n in rows] + [1])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, count) in enumerate(rows):
        y = PLOT_TOP + i * ROW_HEIGHT
        w = plot_w * count / top
        parts.append(
            f'<text class="label" x="{ROW_LABEL_WIDTH - 8}" y="{y + 15}" '
            f'text-anchor="end">{escape(label)}</text>'
            f'<rect class="{escape(css)}" x="{ROW_LABEL_WIDTH}" y="{y + 3}" width="{w:.1f}" '
            f'height="{ROW_HEIGHT - 6}"><title>{escape(label)}: {count:,}</title></rect>'
            f'<text class="label" x="{ROW_LABEL_WIDTH + w + 6:.1f}" y="{y + 15}">{count:,}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
