"""``lag``, pure part: lateness (ingest time - event time) percentiles per source / event type /
event day and over the window, its distribution, and the latest-arriving events."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from infra.rollups import lag_bucket
from pik.investigate.gaps import Axis
from pik.investigate.stats import LagStats, lag_histogram
from pik.investigate.window import Window

__all__ = [
    "LATE_EVENT_ATTRIBUTES",
    "LagGroup",
    "LagReport",
    "LateEvent",
    "latest_arrivals",
    "summarize_lags",
]

LATE_EVENT_ATTRIBUTES = (
    "event_id",
    "source",
    "event_type",
    "entity_id",
    "event_time",
    "ingest_time",
    "lag_ms",
    "first_occurrence",
)


@dataclass(frozen=True, slots=True)
class LagGroup:
    source: str
    event_type: str
    day: str | None  # None: the whole window
    stats: LagStats
    histogram: list[tuple[str, int]]

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"source": self.source, "event_type": self.event_type}
        if self.day is not None:
            doc["day"] = self.day
        doc.update(self.stats.to_json())
        if self.day is None:
            doc["histogram"] = [{"bucket": label, "count": n} for label, n in self.histogram]
        return doc


@dataclass(frozen=True, slots=True)
class LateEvent:
    event_id: str
    source: str
    event_type: str
    entity_id: str
    event_time: str
    ingest_time: str
    lag_ms: int
    first_occurrence: str | None = None

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> LateEvent:
        return cls(
            event_id=str(item["event_id"]),
            source=str(item["source"]),
            event_type=str(item["event_type"]),
            entity_id=str(item["entity_id"]),
            event_time=str(item["event_time"]),
            ingest_time=str(item["ingest_time"]),
            lag_ms=int(item["lag_ms"]),
            first_occurrence=item.get("first_occurrence"),
        )

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in LATE_EVENT_ATTRIBUTES}


@dataclass(slots=True)
class LagReport:
    window: Window
    sources: list[str]
    by_day: list[LagGroup]
    overall: list[LagGroup]
    latest: list[LateEvent]
    cost: dict[str, int] = field(default_factory=dict)
    axis: Axis = Axis.EVENT  # the window selects by event time, or by arrival (ingest) time

    def to_json(self) -> dict[str, Any]:
        return {
            "window": self.window.to_json(),
            "axis": self.axis.value,
            "sources": self.sources,
            "overall": [g.to_json() for g in self.overall],
            "by_day": [g.to_json() for g in self.by_day],
            "latest": [e.to_json() for e in self.latest],
            "cost": self.cost,
        }


def summarize_lags(
    lags: Mapping[tuple[str, str, str], Sequence[int] | Mapping[int, int]],
    maxima: Mapping[tuple[str, str, str], int] | None = None,
) -> tuple[list[LagGroup], list[LagGroup]]:
    """Per (source, event type, event day) and per (source, event type) over every day, from
    lag values or lag -> how many (a rollup's histogram); ``maxima``: the exact largest lag of
    a (source, type, day) whose histogram has it to two significant digits only."""
    by_day: list[LagGroup] = []
    pooled: dict[tuple[str, str], Counter[int]] = {}
    pooled_max: dict[tuple[str, str], int] = {}
    for (source, event_type, day), values in sorted(lags.items()):
        counts: Counter[int] = Counter(values)
        stats = LagStats.of_counts(counts)
        if stats is None:
            continue
        exact = (maxima or {}).get((source, event_type, day))
        # the largest entry read is the max when it falls in the histogram's top bucket (below
        # it for a negative lag: buckets round toward zero)
        if exact is not None and (exact >= stats.max_ms or lag_bucket(exact) == stats.max_ms):
            stats = replace(stats, max_ms=exact)
        pair = (source, event_type)
        pooled_max[pair] = max(pooled_max.get(pair, stats.max_ms), stats.max_ms)
        by_day.append(LagGroup(source, event_type, day, stats, lag_histogram(counts)))
        pooled.setdefault(pair, Counter()).update(counts)
    overall = []
    for (source, event_type), counts in sorted(pooled.items()):
        stats = LagStats.of_counts(counts)
        assert stats is not None
        stats = replace(stats, max_ms=max(stats.max_ms, pooled_max[(source, event_type)]))
        overall.append(LagGroup(source, event_type, None, stats, lag_histogram(counts)))
    return by_day, overall


def latest_arrivals(candidates: Iterable[LateEvent], top: int) -> list[LateEvent]:
    """The ``top`` latest events of several per-partition candidate lists, latest first."""
    unique = {e.event_id: e for e in candidates}
    return sorted(unique.values(), key=lambda e: (-e.lag_ms, e.event_id))[:top]
