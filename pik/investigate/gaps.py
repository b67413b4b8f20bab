"""``gaps``, pure part: count events per hour or day, take the median bucket as the usual
baseline, and report the runs of buckets that are empty or far below it.

Three things keep the answer honest: the unfinished bucket the window ends in (the current hour)
is shown as *partial* and never flagged; the baseline is the median over the span where the
series has data (from its first non-empty bucket), so a hole in a source younger than the window
is found; and a series with no events in the window at all is *no data in window*, not one gap
as long as the window.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pik.investigate.stats import median
from pik.investigate.window import Granularity, Window, iso

__all__ = [
    "DEFAULT_THRESHOLD",
    "Axis",
    "Bucket",
    "Gap",
    "GapKind",
    "GapReport",
    "GapSeries",
    "count_buckets",
    "find_gaps",
    "gap_series",
    "tally_buckets",
]

DEFAULT_THRESHOLD = 0.2  # a bucket under 20 % of the median bucket is "far fewer than usual"


class Axis(StrEnum):
    EVENT = "event"  # by event time: which windows the data describes are missing
    ARRIVAL = "arrival"  # by ingest time: when nothing reached the kit


class GapKind(StrEnum):
    MISSING = "missing"  # no events at all
    LOW = "low"  # some, but under threshold x baseline


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    count: int
    partial: bool = False  # the window ends inside it: counted so far, never flagged


@dataclass(frozen=True, slots=True)
class Gap:
    start: datetime
    end: datetime
    kind: GapKind
    count: int  # events in the gap
    expected: float  # the baseline x the gap's buckets

    def to_json(self) -> dict[str, Any]:
        return {
            "start": iso(self.start),
            "end": iso(self.end),
            "kind": self.kind.value,
            "count": self.count,
            "expected": self.expected,
        }


@dataclass(frozen=True, slots=True)
class GapSeries:
    source: str
    event_type: str | None  # None: every event type of the source together
    buckets: list[Bucket]
    baseline: float
    gaps: list[Gap]

    @property
    def total(self) -> int:
        return sum(b.count for b in self.buckets)

    @property
    def no_data(self) -> bool:
        """No events in the window at all: said once, never drawn or counted as a gap."""
        return self.total == 0

    @property
    def data_from(self) -> datetime | None:
        """The first bucket with events: where the baseline (the usual level) starts."""
        return next((b.start for b in self.buckets if b.count), None)

    def to_json(self, *, with_buckets: bool = True) -> dict[str, Any]:
        first = self.data_from
        doc: dict[str, Any] = {
            "source": self.source,
            "event_type": self.event_type,
            "total": self.total,
            "no_data": self.no_data,
            "data_from": iso(first) if first else None,
            "baseline": self.baseline,
            "gaps": [g.to_json() for g in self.gaps],
        }
        if with_buckets:
            doc["buckets"] = [
                {
                    "start": iso(b.start),
                    "count": b.count,
                    **({"partial": True} if b.partial else {}),
                }
                for b in self.buckets
            ]
        return doc


@dataclass(slots=True)
class GapReport:
    window: Window
    granularity: Granularity
    axis: Axis
    threshold: float
    series: list[GapSeries]
    cost: dict[str, int] = field(default_factory=dict)

    @property
    def found(self) -> int:
        """Gaps in every series (a series with no data in the window has none)."""
        return sum(len(s.gaps) for s in self.series)

    @property
    def no_data(self) -> list[GapSeries]:
        return [s for s in self.series if s.no_data]

    def to_json(self) -> dict[str, Any]:
        return {
            "window": self.window.to_json(),
            "granularity": self.granularity.value,
            "axis": self.axis.value,
            "threshold": self.threshold,
            "series": [s.to_json() for s in self.series],
            "cost": self.cost,
        }


def gap_series(
    source: str,
    event_type: str | None,
    counts: Mapping[str, int],
    window: Window,
    granularity: Granularity,
    threshold: float = DEFAULT_THRESHOLD,
) -> GapSeries:
    """One series of ``window``: its whole buckets, the partial bucket the window ends in (the
    current hour of a window ending now), its baseline and its gaps. ``counts`` are keyed as
    ``tally_buckets`` reads them."""
    buckets = tally_buckets(counts, window.buckets(granularity), granularity)
    partial = window.partial_bucket(granularity)
    if partial is not None:
        width = granularity.key_width
        buckets.append(Bucket(partial, counts.get(iso(partial)[:width], 0), partial=True))
    baseline, found = find_gaps(buckets, granularity, threshold)
    return GapSeries(source, event_type, buckets, baseline, found)


def count_buckets(
    times: Iterable[str], buckets: list[datetime], granularity: Granularity
) -> list[Bucket]:
    """Counts per bucket of ``format_time`` texts (times outside every bucket are ignored)."""
    width = granularity.key_width
    return tally_buckets(Counter(t[:width] for t in times), buckets, granularity)


def tally_buckets(
    counts: Mapping[str, int], buckets: list[datetime], granularity: Granularity
) -> list[Bucket]:
    """Buckets from counts keyed by the leading ``granularity.key_width`` characters of a time
    text (``2025-12-28T05`` an hour, ``2025-12-28`` a day); every bucket, empty ones too."""
    width = granularity.key_width
    return [Bucket(b, counts.get(iso(b)[:width], 0)) for b in buckets]


def find_gaps(
    buckets: list[Bucket], granularity: Granularity, threshold: float = DEFAULT_THRESHOLD
) -> tuple[float, list[Gap]]:
    """The baseline and the runs of whole buckets below ``threshold`` x baseline.

    The baseline is the median whole bucket from the series' first non-empty one on: before it
    the source did not exist yet, and counting those empty buckets would make a young source's
    usual level zero and hide its holes. A series with no events has no gaps (it is "no data in
    window"); one whose median is zero (mostly quiet) has no "usual" to fall short of, so nothing
    is flagged. A partial bucket is never flagged: it is only unfinished.
    """
    whole = [b for b in buckets if not b.partial]
    first = next((i for i, b in enumerate(whole) if b.count), None)
    if first is None:
        return 0.0, []
    span = whole[first:]
    baseline = median([b.count for b in span])
    limit = threshold * baseline
    gaps: list[Gap] = []
    run: list[Bucket] = []
    run_kind: GapKind | None = None
    for bucket in [*span, None]:
        kind = None
        if bucket is not None and bucket.count < limit:
            kind = GapKind.MISSING if bucket.count == 0 else GapKind.LOW
        if run and kind != run_kind:
            assert run_kind is not None
            gaps.append(
                Gap(
                    run[0].start,
                    run[-1].start + granularity.step,
                    run_kind,
                    sum(b.count for b in run),
                    baseline * len(run),
                )
            )
            run = []
        if kind is not None and bucket is not None:
            run.append(bucket)
            run_kind = kind
    return baseline, gaps
