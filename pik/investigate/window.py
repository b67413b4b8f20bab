"""Time windows and buckets for the investigation commands: parsing ``--since``/``--until``,
whole-hour / whole-day buckets, and the index's day partitions a window touches."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from infra.errors import KitError
from schemas.envelope import format_time, parse_time

__all__ = [
    "DEFAULT_LOOKBACK",
    "Granularity",
    "Window",
    "WindowError",
    "iso",
    "parse_when",
    "resolve_window",
]

DEFAULT_LOOKBACK = timedelta(days=7)
_RELATIVE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class WindowError(KitError, ValueError):
    """A ``--since``/``--until`` that cannot be understood, or an empty window."""


class Granularity(StrEnum):
    HOUR = "hour"
    DAY = "day"

    @property
    def step(self) -> timedelta:
        return timedelta(hours=1) if self is Granularity.HOUR else timedelta(days=1)

    @property
    def key_width(self) -> int:
        """How many leading characters of a ``format_time`` text name a bucket."""
        return 13 if self is Granularity.HOUR else 10

    def floor(self, value: datetime) -> datetime:
        value = value.astimezone(UTC)
        if self is Granularity.HOUR:
            return value.replace(minute=0, second=0, microsecond=0)
        return value.replace(hour=0, minute=0, second=0, microsecond=0)


def iso(value: datetime) -> str:
    """Short ISO 8601 UTC text for people and JSON: ``2025-12-28T05:00:00Z``."""
    text = value.astimezone(UTC).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")


MAX_WINDOW = timedelta(days=366)  # as replay: each day of a window costs Queries
_WIDENING = timedelta(hours=2)  # what ``whole_hours`` may add to a window at the limit


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open UTC time window ``[start, end)``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise WindowError("window bounds need a UTC offset")
        if self.end <= self.start:
            raise WindowError(f"empty window: {iso(self.start)} is not before {iso(self.end)}")
        if self.end - self.start > MAX_WINDOW + _WIDENING:
            raise WindowError(
                f"window of {(self.end - self.start).days} days: at most {MAX_WINDOW.days} "
                "(each day costs Queries); split it"
            )

    @property
    def low(self) -> str:
        """The lowest sort key in the window (``<time>#<id>`` keys at ``start`` sort after it)."""
        return format_time(self.start)

    @property
    def high(self) -> str:
        """A sort-key bound that keeps ``end`` itself out (``<end>#<id>`` sorts after it)."""
        return format_time(self.end)

    def whole_hours(self) -> Window:
        """The window widened to whole UTC hours: what hourly rollups count."""
        step = Granularity.HOUR.step
        start, end = Granularity.HOUR.floor(self.start), Granularity.HOUR.floor(self.end)
        return Window(start, end if end == self.end else end + step)

    def days(self) -> list[str]:
        """Every UTC day (``YYYY-MM-DD``) the window touches: the index partitions to Query."""
        first = self.start.astimezone(UTC).date()
        last = (self.end - timedelta(microseconds=1)).astimezone(UTC).date()
        return [str(first + timedelta(days=n)) for n in range((last - first).days + 1)]

    def buckets(self, granularity: Granularity) -> list[datetime]:
        """Start of every whole bucket inside the window (a partial bucket at either end is
        left out: it would look like a dip when it is only unfinished)."""
        step = granularity.step
        first = granularity.floor(self.start)
        if first < self.start:
            first += step
        out: list[datetime] = []
        while first + step <= self.end:
            out.append(first)
            first += step
        return out

    def partial_bucket(self, granularity: Granularity) -> datetime | None:
        """Start of the unfinished bucket the window ends in (the current hour of a window that
        ends now), when that bucket starts inside the window; None when the end is on a bucket
        boundary."""
        last = granularity.floor(self.end)
        return last if self.start <= last < self.end else None

    def to_json(self) -> dict[str, str]:
        return {"since": iso(self.start), "until": iso(self.end)}


def parse_when(text: str, now: datetime) -> datetime:
    """``2025-12-28T05:00:00Z`` (an offset is required), ``2025-12-28`` (midnight UTC), or a
    duration before ``now``: ``90m``, ``36h``, ``7d``, ``2w``."""
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = int(relative.group(1)), _UNITS[relative.group(2)]
        return now - timedelta(**{unit: amount})
    try:
        return datetime.combine(date.fromisoformat(text.strip()), time(), tzinfo=UTC)
    except ValueError:
        pass
    try:
        return parse_time(text.strip())
    except ValueError:
        raise WindowError(
            f"cannot read time {text!r}: use 2025-12-28T05:00:00Z, 2025-12-28, or 36h / 7d ago"
        ) from None


def resolve_window(
    since: str | None,
    until: str | None,
    now: datetime,
    *,
    lookback: timedelta = DEFAULT_LOOKBACK,
) -> Window:
    """The window the flags ask for; by default the ``lookback`` before ``now``."""
    end = parse_when(until, now) if until else now
    start = parse_when(since, now) if since else end - lookback
    return Window(start, end)
