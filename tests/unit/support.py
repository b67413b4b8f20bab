"""Helpers for the unit tier: the user guide's event and a sink on in-memory adapters."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from consumers.ingest import IngestSink, Submission
from infra.archive import MemoryRawArchive
from infra.clock import FixedClock
from infra.index import MemoryEventIndex
from infra.metrics import Metrics
from schemas.codec import Provenance
from schemas.envelope import parse_body

# The event exactly as ARCHITECTURE.md / the user guide shows it.
GUIDE_EVENT: dict[str, Any] = {
    "source": "demo",
    "event_type": "heartbeat",
    "entity_id": "user_123",
    "event_time": "2025-12-28T23:59:59Z",
    "payload": {"steps": 10},
    "idempotency_key": "optional-stable-producer-key",
}

# Ingest happens an hour and a second after the guide event's time.
NOW = datetime(2025, 12, 29, 1, 0, 0, tzinfo=UTC)


def event_body(**changes: Any) -> bytes:
    """The guide event without its idempotency key (content identity), with ``changes``."""
    body = {k: v for k, v in GUIDE_EVENT.items() if k != "idempotency_key"}
    body.update(changes)
    return json.dumps(body).encode("utf-8")


def submission(raw: bytes, occurrence_id: str, position: str = "0") -> Submission:
    return Submission(
        raw=raw,
        provenance=Provenance(occurrence_id=occurrence_id, origin="http", request_id=occurrence_id),
        parsed=parse_body(raw),
        position=position,
    )


class MemoryKit:
    """A sink on in-memory adapters, with the adapters kept for inspection."""

    def __init__(
        self,
        *,
        archive: MemoryRawArchive | None = None,
        index: MemoryEventIndex | None = None,
        dry_run: bool = False,
        **sink_kwargs: Any,
    ) -> None:
        self.archive = archive or MemoryRawArchive()
        self.index = index or MemoryEventIndex()
        self.clock = FixedClock(NOW)
        self.metrics = Metrics()
        self.sink = IngestSink(
            self.archive, self.index, self.clock, self.metrics, dry_run=dry_run, **sink_kwargs
        )
