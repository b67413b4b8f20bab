"""The replay request (ARCHITECTURE.md, "Replay"): one model for the CLI, the HTTP API and
Python callers, and ``parse_request``, which turns any mapping into a request or an
``InvalidReplayRequest`` carrying a stable reason code (``invalid_time``, ``invalid_window``,
``no_selector``, ``invalid_limit``, ``invalid_target``, ``unexpected_field``, ...).

The window is half-open on event time, ``[start_time, end_time)``. Times are RFC 3339 with an
offset (``Z`` or ``+hh:mm``); a plain date means midnight UTC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from infra.errors import KitError
from infra.index import Selection
from infra.targets import check_target_spec
from producers.replay_plan import PlanSpec
from schemas.envelope import (
    MAX_ENTITY_ID_LENGTH,
    MAX_EVENT_TYPE_LENGTH,
    MAX_SOURCE_LENGTH,
    parse_time,
)

__all__ = [
    "MAX_RATE",
    "MAX_WINDOW_DAYS",
    "REPLAY_ID",
    "InvalidReplayRequest",
    "ReplayRequest",
    "check_replay_id",
    "iso",
    "parse_request",
]

MAX_WINDOW_DAYS = 366  # day-partitioned selections make one Query per day
MAX_RATE = 100_000.0
REPLAY_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# -- the request ----------------------------------------------------------------------------------
class InvalidReplayRequest(KitError):
    """A request the kit refuses; ``reason`` is a stable code, ``detail`` says what to fix."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def check_replay_id(replay_id: str) -> str:
    """``replay_id`` if it can name a job, else ``InvalidReplayRequest("invalid_replay_id")``
    (before any backend call: an empty or odd key would be the backend's error, not ours)."""
    if not REPLAY_ID.match(replay_id):
        shown = repr(replay_id[:140])
        raise InvalidReplayRequest(
            "invalid_replay_id",
            f"{shown} is not a replay id (1-128 of A-Z a-z 0-9 . _ : -, "
            "e.g. rp-20251229T010000Z-1a2b3c4d from `pik replays list`)",
        )
    return replay_id


def _as_time(value: Any, name: str) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise PydanticCustomError("invalid_time", f"{name} has no UTC offset")
        return value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if not isinstance(value, str) or not value.strip():
        raise PydanticCustomError("invalid_time", f"{name} must be an RFC 3339 time text")
    text = value.strip()
    try:
        if len(text) == 10:  # a plain date: midnight UTC
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        return parse_time(text)
    except ValueError:
        raise PydanticCustomError(
            "invalid_time",
            f"{name} {text!r} is not a time with a UTC offset, e.g. 2025-12-28T00:00:00Z",
        ) from None


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


Selector = Annotated[str, StringConstraints(min_length=1, strict=True)]


class ReplayRequest(BaseModel):
    """What to replay. The window is half-open on event time: ``[start_time, end_time)``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entity_id: Annotated[Selector, StringConstraints(max_length=MAX_ENTITY_ID_LENGTH)] | None = None
    source: Annotated[Selector, StringConstraints(max_length=MAX_SOURCE_LENGTH)] | None = None
    event_type: Annotated[Selector, StringConstraints(max_length=MAX_EVENT_TYPE_LENGTH)] | None = (
        None
    )
    start_time: datetime
    end_time: datetime
    limit: int | None = Field(None, ge=1, strict=True)
    include_duplicates: bool = Field(False, strict=True)
    include_rejected: bool = Field(False, strict=True)
    target: str | None = None
    dry_run: bool = Field(False, strict=True)
    rate_limit: float | None = Field(None, gt=0, le=MAX_RATE)
    min_lag_ms: int | None = Field(None, ge=0, strict=True)
    with_payload: bool = Field(False, strict=True)

    @field_validator("start_time", "end_time", mode="before")
    @classmethod
    def _time(cls, value: Any, info: Any) -> datetime:
        return _as_time(value, info.field_name)

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        try:
            return check_target_spec(value)
        except KitError as exc:
            raise PydanticCustomError("invalid_target", str(exc)) from None

    @model_validator(mode="after")
    def _window(self) -> ReplayRequest:
        if self.entity_id is None and self.source is None and self.event_type is None:
            raise PydanticCustomError(
                "no_selector", "give an entity_id, a source or an event_type (or several)"
            )
        if self.end_time <= self.start_time:
            raise PydanticCustomError(
                "invalid_window",
                f"end_time {iso(self.end_time)} must be after start_time "
                f"{iso(self.start_time)} (the window is [start, end))",
            )
        days = (self.end_time - self.start_time) / timedelta(days=1)
        by_day = self.entity_id is None or self.include_rejected
        if by_day and days > MAX_WINDOW_DAYS:
            raise PydanticCustomError(
                "window_too_wide",
                f"a window of {days:.0f} days is over {MAX_WINDOW_DAYS} (selections by source, "
                "event type or with rejected deliveries are read day by day): split it",
            )
        return self

    def selection(self) -> Selection:
        return Selection(
            start=self.start_time,
            end=self.end_time,
            entity_id=self.entity_id,
            source=self.source,
            event_type=self.event_type,
            min_lag_ms=self.min_lag_ms,
        )

    def spec(self) -> PlanSpec:
        return PlanSpec(self.selection(), self.include_duplicates, self.include_rejected)

    def to_json(self) -> dict[str, Any]:
        doc = self.model_dump()
        doc["start_time"] = iso(self.start_time)
        doc["end_time"] = iso(self.end_time)
        return doc


_REASON_BY_TYPE = {
    "invalid_time": "invalid_time",
    "invalid_window": "invalid_window",
    "window_too_wide": "invalid_window",
    "no_selector": "no_selector",
    "invalid_target": "invalid_target",
    "extra_forbidden": "unexpected_field",
    "missing": "missing_field",
}


def parse_request(data: Any, **overrides: Any) -> ReplayRequest:
    """A validated request from a JSON object (overrides win, None overrides are ignored)."""
    if not isinstance(data, Mapping):
        raise InvalidReplayRequest("invalid_request", "the body must be a JSON object")
    merged = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return ReplayRequest.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        kind = first["type"]
        reason = _REASON_BY_TYPE.get(kind)
        if reason is None:
            reason = f"invalid_{where}" if where in ("limit", "rate_limit") else "invalid_field"
        message = first["msg"]
        detail = message if not where or where in message else f"{where}: {message}"
        raise InvalidReplayRequest(reason, detail) from None
