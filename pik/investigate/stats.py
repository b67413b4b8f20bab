"""Small, pure statistics: nearest-rank percentiles, medians, lag summaries and histograms."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "LAG_BUCKETS",
    "LagStats",
    "lag_histogram",
    "median",
    "percentile",
]

# Upper bounds (ms, exclusive) and labels of the lag histogram: roughly x10 steps that match how
# people talk about lateness ("seconds", "minutes", "hours", "days late").
LAG_BUCKETS: tuple[tuple[float, str], ...] = (
    (1_000, "< 1 s"),
    (10_000, "1-10 s"),
    (60_000, "10 s-1 min"),
    (600_000, "1-10 min"),
    (3_600_000, "10 min-1 h"),
    (21_600_000, "1-6 h"),
    (86_400_000, "6-24 h"),
    (math.inf, "≥ 1 day"),
)


def percentile(ordered: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of values sorted ascending: always a value that occurred."""
    if not ordered:
        raise ValueError("no values")
    if not 0 < q <= 100:
        raise ValueError("q must be in (0, 100]")
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def median(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[mid])
    return (ordered[mid - 1] + ordered[mid]) / 2


@dataclass(frozen=True, slots=True)
class LagStats:
    count: int
    min_ms: int
    p50_ms: int
    p95_ms: int
    p99_ms: int
    max_ms: int

    @classmethod
    def of(cls, values: Sequence[int]) -> LagStats | None:
        """Lateness of a group of events (None when there are none)."""
        if not values:
            return None
        ordered = sorted(values)
        return cls(
            count=len(ordered),
            min_ms=ordered[0],
            p50_ms=percentile(ordered, 50),
            p95_ms=percentile(ordered, 95),
            p99_ms=percentile(ordered, 99),
            max_ms=ordered[-1],
        )

    @classmethod
    def of_counts(cls, counts: Mapping[int, int]) -> LagStats | None:
        """The same from lag -> how many (a rollup's histogram), without listing the values."""
        ordered = sorted((lag, n) for lag, n in counts.items() if n > 0)
        total = sum(n for _, n in ordered)
        if not total:
            return None

        def rank(q: float) -> int:
            wanted, seen = max(math.ceil(q / 100 * total), 1), 0
            for lag, n in ordered:
                seen += n
                if seen >= wanted:
                    return lag
            return ordered[-1][0]

        return cls(total, ordered[0][0], rank(50), rank(95), rank(99), ordered[-1][0])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def lag_histogram(values: Sequence[int] | Mapping[int, int]) -> list[tuple[str, int]]:
    """Counts per ``LAG_BUCKETS`` bucket, in order (negative lags, clock skew, count as < 1 s),
    of lag values or of lag -> how many."""
    pairs = values.items() if isinstance(values, Mapping) else ((v, 1) for v in values)
    counts = [0] * len(LAG_BUCKETS)
    for value, n in pairs:
        for i, (bound, _) in enumerate(LAG_BUCKETS):
            if value < bound:
                counts[i] += n
                break
    return [(label, n) for (_, label), n in zip(LAG_BUCKETS, counts, strict=True)]
