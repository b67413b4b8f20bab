"""``audit``, pure part: from every delivery of a window (accepted, duplicate, rejected), the
counts per source / event type / ingest day by status, rejection reasons ranked, the duplicate
rate, the entities that cause the most trouble, and duplicate storms."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from infra.rollups import ACCEPTED, DUPLICATE, REJECTED, Rollup, recount
from pik.investigate.stats import median
from pik.investigate.window import Granularity, Window, iso
from schemas.envelope import Status

__all__ = [
    "DELIVERY_ATTRIBUTES",
    "STORM_FACTOR",
    "STORM_MIN_DUPLICATES",
    "UNKNOWN",
    "AuditReport",
    "DayCounts",
    "Delivery",
    "DuplicateStorm",
    "EntityTrouble",
    "HourCounts",
    "ReasonCount",
    "find_storms",
    "summarize_audit",
    "summarize_deliveries",
]

UNKNOWN = "_unknown"  # what the index calls a source or type a rejected record did not have
# A storm: an ingest hour with at least this many duplicates, and at least STORM_FACTOR times
# the window's median duplicates per hour (so a producer that always retries once is not one).
STORM_MIN_DUPLICATES = 10
STORM_FACTOR = 3.0
TOP_STORM_EVENTS = 3
# The attributes audit reads from each delivery (a ProjectionExpression keeps pages small).
DELIVERY_ATTRIBUTES = (
    "event_id",
    "status",
    "reason",
    "source",
    "event_type",
    "entity_id",
    "ingest_time",
)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery as the ``by_ingest_day`` index holds it."""

    event_id: str
    status: str
    ingest_time: str  # format_time text: fixed width, so prefixes name days and hours
    source: str = UNKNOWN
    event_type: str = UNKNOWN
    entity_id: str | None = None
    reason: str | None = None

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Delivery:
        return cls(
            event_id=str(item["event_id"]),
            status=str(item["status"]),
            ingest_time=str(item["ingest_time"]),
            source=str(item.get("source") or UNKNOWN),
            event_type=str(item.get("event_type") or UNKNOWN),
            entity_id=item.get("entity_id"),
            reason=item.get("reason"),
        )


def _empty_counts() -> dict[str, int]:
    return {s.value: 0 for s in Status}


@dataclass(frozen=True, slots=True)
class DayCounts:
    source: str
    event_type: str
    day: str
    accepted: int
    duplicate: int
    rejected: int

    @property
    def total(self) -> int:
        return self.accepted + self.duplicate + self.rejected

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "event_type": self.event_type,
            "day": self.day,
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "total": self.total,
        }


@dataclass(frozen=True, slots=True)
class ReasonCount:
    reason: str
    count: int
    share: float  # of all rejections
    event_types: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "count": self.count,
            "share": round(self.share, 4),
            "event_types": self.event_types,
        }


@dataclass(frozen=True, slots=True)
class EntityTrouble:
    """An entity with duplicate or rejected deliveries."""

    entity_id: str
    source: str
    duplicate: int
    rejected: int

    @property
    def total(self) -> int:
        return self.duplicate + self.rejected

    def to_json(self) -> dict[str, Any]:
        return {
            "entity_id": self.entity_id,
            "source": self.source,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
        }


@dataclass(frozen=True, slots=True)
class HourCounts:
    hour: datetime
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "hour": iso(self.hour),
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
        }


@dataclass(frozen=True, slots=True)
class DuplicateStorm:
    """A run of ingest hours with far more duplicates than usual."""

    start: datetime
    end: datetime
    duplicates: int
    accepted: int
    baseline: float  # the window's median duplicates per hour
    top_events: list[tuple[str, int]]  # the most duplicated event ids, with their counts

    def to_json(self) -> dict[str, Any]:
        return {
            "start": iso(self.start),
            "end": iso(self.end),
            "duplicates": self.duplicates,
            "accepted": self.accepted,
            "baseline_per_hour": self.baseline,
            "top_events": [{"event_id": e, "duplicates": n} for e, n in self.top_events],
        }


@dataclass(slots=True)
class AuditReport:
    window: Window
    sources: list[str]
    event_type: str | None
    totals: dict[str, int]
    by_day: list[DayCounts]
    reasons: list[ReasonCount]
    top_entities: list[EntityTrouble]
    hourly: list[HourCounts]
    storms: list[DuplicateStorm]
    cost: dict[str, int] = field(default_factory=dict)
    # Duplicate and rejected deliveries read for top entities and storms' events: all of them,
    # or the first TROUBLE_READ_LIMIT of a window with more (the counts are complete anyway).
    troubled_read: int = 0

    @property
    def troubled(self) -> int:
        return self.totals[Status.DUPLICATE] + self.totals[Status.REJECTED]

    @property
    def sampled(self) -> bool:
        """Top entities and storms' events come from part of the window's troubled deliveries."""
        return self.troubled_read < self.troubled

    @property
    def duplicate_rate(self) -> float:
        """Duplicates among valid deliveries (a rejected record is neither new nor a copy)."""
        valid = self.totals[Status.ACCEPTED] + self.totals[Status.DUPLICATE]
        return self.totals[Status.DUPLICATE] / valid if valid else 0.0

    @property
    def rejection_rate(self) -> float:
        total = sum(self.totals.values())
        return self.totals[Status.REJECTED] / total if total else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "window": self.window.to_json(),
            "sources": self.sources,
            "event_type": self.event_type,
            "totals": {k.lower(): v for k, v in self.totals.items()}
            | {"deliveries": sum(self.totals.values())},
            "duplicate_rate": round(self.duplicate_rate, 4),
            "rejection_rate": round(self.rejection_rate, 4),
            "by_day": [d.to_json() for d in self.by_day],
            "reasons": [r.to_json() for r in self.reasons],
            "top_entities": [e.to_json() for e in self.top_entities],
            "duplicate_storms": [s.to_json() for s in self.storms],
            "hourly": [h.to_json() for h in self.hourly],
            "troubled_read": self.troubled_read,
            "cost": self.cost,
        }


def find_storms(
    hourly: list[HourCounts],
    top_events: Mapping[datetime, Counter[str]],
    *,
    min_duplicates: int = STORM_MIN_DUPLICATES,
    factor: float = STORM_FACTOR,
) -> list[DuplicateStorm]:
    """Consecutive hours whose duplicates reach ``min_duplicates`` and ``factor`` x the median
    duplicates per hour of the whole window, merged into storms."""
    baseline = median([h.duplicate for h in hourly])
    threshold = max(float(min_duplicates), factor * baseline)
    storms: list[DuplicateStorm] = []
    run: list[HourCounts] = []
    for hour in [*hourly, None]:
        if hour is not None and hour.duplicate >= threshold:
            run.append(hour)
            continue
        if run:
            ids: Counter[str] = Counter()
            for h in run:
                ids.update(top_events.get(h.hour, Counter()))
            storms.append(
                DuplicateStorm(
                    start=run[0].hour,
                    end=run[-1].hour + Granularity.HOUR.step,
                    duplicates=sum(h.duplicate for h in run),
                    accepted=sum(h.accepted for h in run),
                    baseline=baseline,
                    top_events=ids.most_common(TOP_STORM_EVENTS),
                )
            )
            run = []
    return storms


def summarize_deliveries(
    deliveries: Iterable[Delivery],
    window: Window,
    *,
    sources: list[str],
    event_type: str | None = None,
    top: int = 10,
) -> AuditReport:
    """Everything ``pik audit`` says, from the deliveries of ``window`` (counted into rollups
    here, as the sink counts them as it indexes)."""
    troubled: list[Delivery] = []

    def counted() -> Iterator[dict[str, Any]]:
        for d in deliveries:
            if d.status != Status.ACCEPTED:
                troubled.append(d)
            yield {
                "status": d.status,
                "source": d.source,
                "event_type": d.event_type,
                "ingest_time": d.ingest_time,
                "event_time": d.ingest_time,  # audit counts by ingest time only
                "reason": d.reason,
            }

    rollups = recount(counted())
    return summarize_audit(
        rollups, troubled, window, sources=sources, event_type=event_type, top=top
    )


def summarize_audit(
    rollups: Iterable[Rollup],
    troubled: Iterable[Delivery],
    window: Window,
    *,
    sources: list[str],
    event_type: str | None = None,
    top: int = 10,
    troubled_read: int | None = None,
) -> AuditReport:
    """Everything ``pik audit`` says: the counts from the rollups of the window's hours, the
    entities and duplicated events from ``troubled`` (duplicate and rejected deliveries; the
    first ``troubled_read`` of them when the reader stopped early)."""
    totals = _empty_counts()
    per_day: dict[tuple[str, str, str], dict[str, int]] = defaultdict(_empty_counts)
    reasons: Counter[str] = Counter()
    reason_types: dict[str, set[str]] = defaultdict(set)
    hours = {iso(h)[:13]: h for h in window.buckets(Granularity.HOUR)}
    per_hour: dict[datetime, dict[str, int]] = defaultdict(_empty_counts)
    for r in rollups:
        counts = {
            Status.ACCEPTED.value: r.count(ACCEPTED),
            Status.DUPLICATE.value: r.count(DUPLICATE),
            Status.REJECTED.value: r.count(REJECTED),
        }
        if not any(counts.values()):
            continue  # an event-time-only rollup (late events of this hour)
        day = per_day[(r.source, r.event_type, r.hour[:10])]
        hour = hours.get(r.hour)
        for status, n in counts.items():
            totals[status] += n
            day[status] += n
            if hour is not None:
                per_hour[hour][status] += n
        for reason, n in r.reasons().items():
            reasons[reason] += n
            reason_types[reason].add(r.event_type)
    trouble: dict[tuple[str, str], dict[str, int]] = defaultdict(_empty_counts)
    dup_ids: dict[datetime, Counter[str]] = defaultdict(Counter)
    for d in troubled:
        if d.entity_id:
            trouble[(d.source, d.entity_id)][d.status] += 1
        hour = hours.get(d.ingest_time[:13])
        if hour is not None and d.status == Status.DUPLICATE:
            dup_ids[hour][d.event_id] += 1
    rejected = totals[Status.REJECTED]
    hourly = [
        HourCounts(
            h,
            per_hour[h][Status.ACCEPTED],
            per_hour[h][Status.DUPLICATE],
            per_hour[h][Status.REJECTED],
        )
        for h in hours.values()
    ]
    entities = sorted(
        (
            EntityTrouble(entity, source, c[Status.DUPLICATE], c[Status.REJECTED])
            for (source, entity), c in trouble.items()
        ),
        key=lambda e: (-e.total, e.source, e.entity_id),
    )
    troubled_total = totals[Status.DUPLICATE] + totals[Status.REJECTED]
    return AuditReport(
        window=window,
        sources=sources,
        event_type=event_type,
        totals=totals,
        by_day=[
            DayCounts(s, t, day, c[Status.ACCEPTED], c[Status.DUPLICATE], c[Status.REJECTED])
            for (s, t, day), c in sorted(per_day.items())
        ],
        reasons=[
            ReasonCount(reason, n, n / rejected, sorted(reason_types[reason]))
            for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        top_entities=entities[:top],
        hourly=hourly,
        storms=find_storms(hourly, dup_ids),
        troubled_read=troubled_read if troubled_read is not None else troubled_total,
    )
