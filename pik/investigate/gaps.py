"""``gaps``, pure part: count events per whole hour or day, take the window's median bucket as
the usual baseline, and report the runs of buckets that are empty or far below it."""

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

    def to_json(self, *, with_buckets: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "source": self.source,
            "event_type": self.event_type,
            "total": self.total,
            "baseline": self.baseline,
            "gaps": [g.to_json() for g in self.gaps],
        }
        if with_buckets:
            doc["buckets"] = [{"start": iso(b.start), "count": b.count} for b in self.buckets]
        return doc


@dataclass(slots=True)
class GapReport:
    window: Window
    granularity: Granularity
    axis: Axis
    threshold: float
    series: list[GapSeries]
    cost: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "window": self.window.to_json(),
            "granularity": self.granularity.value,
            "axis": self.axis.value,
            "threshold": self.threshold,
            "series": [s.to_json() for s in self.series],
            "cost": self.cost,
        }


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
    """The baseline (median bucket) and the runs of buckets below ``threshold`` x baseline.

    A series with no events at all is one gap over the whole window; a series whose median is
    zero (mostly quiet) has no "usual" to fall short of, so nothing else is flagged.
    """
    baseline = median([b.count for b in buckets])
    if not buckets:
        return baseline, []
    if all(b.count == 0 for b in buckets):
        end = buckets[-1].start + granularity.step
        return baseline, [Gap(buckets[0].start, end, GapKind.MISSING, 0, 0.0)]
    limit = threshold * baseline
    gaps: list[Gap] = []
    run: list[Bucket] = []
    run_kind: GapKind | None = None
    for bucket in [*buckets, None]:
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
