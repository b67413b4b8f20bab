"""The sending side of a replay: message bodies, pacing and checkpoint timing."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from producers.replay_plan import PlannedMessage
from schemas.codec import ArchiveRecord

__all__ = ["Checkpoints", "Pacer", "chunks", "message_body"]


class Pacer:
    """Keeps the average rate at or under ``rate`` messages/s (a batch goes out whole)."""

    def __init__(
        self, rate: float | None, monotonic: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self._rate = rate
        self._monotonic = monotonic
        self._sleep = sleep
        self._start: float | None = None
        self._count = 0

    @property
    def paced(self) -> bool:
        return self._rate is not None

    def wait(self, n: int) -> None:
        if self._rate is None:
            return
        now = self._monotonic()
        if self._start is None:
            self._start = now
        delay = self._start + self._count / self._rate - now
        if delay > 0:
            self._sleep(delay)
        self._count += n


def _raw_json(raw: bytes) -> dict[str, str]:
    try:
        return {"raw": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"raw_base64": base64.b64encode(raw).decode("ascii")}


def message_body(
    replay_id: str,
    m: PlannedMessage,
    record: ArchiveRecord | None = None,
    *,
    payload_omitted: str | None = None,
) -> str:
    """The JSON a target receives for one planned message (with the archived envelope, or the
    raw bytes of a rejected record, when ``record`` is given). ``payload_omitted`` (a reason,
    e.g. ``too_large``) marks a pointer-only message whose consumer must read the archive."""
    doc: dict[str, Any] = {
        "replay_id": replay_id,
        "event_id": m.event_id,
        "entity_id": m.entity_id,
        "source": m.source,
        "event_type": m.event_type,
        "event_time": m.event_time,
        "status": m.status,
        "archive": m.pointer.to_json(),
    }
    if m.occurrence_id is not None:
        doc["occurrence_id"] = m.occurrence_id
    if m.reason is not None:
        doc["reason"] = m.reason
    if payload_omitted is not None:
        doc["payload_omitted"] = payload_omitted
    if record is not None:
        envelope = record.envelope()
        if envelope is not None:
            doc["envelope"] = envelope
        else:
            doc.update(_raw_json(record.raw))
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def chunks(messages: Iterable[PlannedMessage], size: int) -> Iterator[list[PlannedMessage]]:
    it = iter(messages)
    while chunk := list(islice(it, size)):
        yield chunk


class Checkpoints:
    """When to write progress: every ``every`` messages or ``seconds``, whichever comes first."""

    def __init__(self, every: int, seconds: float, monotonic: Callable[[], float]) -> None:
        self._every = every
        self._seconds = seconds
        self._monotonic = monotonic
        self._count = 0
        self._last = monotonic()

    def due(self, sent: int) -> bool:
        self._count += sent
        now = self._monotonic()
        if self._count >= self._every or now - self._last >= self._seconds:
            self._count, self._last = 0, now
            return True
        return False
