"""The archive's record types: one delivery's provenance and the archived record itself.

Their own module, below both the codec and its hand-written encoder, so that neither imports
the other for them. ``ArchiveRecord`` mirrors ``archive_record.avsc`` (a contract).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where one delivery of a record came from."""

    occurrence_id: str
    origin: str
    request_id: str | None = None
    stream: str | None = None
    shard_id: str | None = None
    sequence_number: str | None = None
    sub_sequence_number: int | None = None
    partition_key: str | None = None
    arrival_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class ArchiveRecord:
    event_id: str
    status: str
    ingest_time: datetime
    raw: bytes
    provenance: Provenance
    reason: str | None = None
    detail: str | None = None
    source: str | None = None
    event_type: str | None = None
    entity_id: str | None = None
    event_time: datetime | None = None
    idempotency_key: str | None = None
    lag_ms: int | None = None
    payload: str | None = None
    schema_fingerprint: str | None = None
    schema_ref: str | None = None  # a remote registry's name for the writer schema

    def to_avro(self) -> dict[str, Any]:
        # Spelled out: this runs once per archived record (dataclasses.asdict deep-copies).
        p = self.provenance
        return {
            "event_id": self.event_id,
            "status": self.status,
            "reason": self.reason,
            "detail": self.detail,
            "source": self.source,
            "event_type": self.event_type,
            "entity_id": self.entity_id,
            "event_time": self.event_time,
            "idempotency_key": self.idempotency_key,
            "ingest_time": self.ingest_time,
            "lag_ms": self.lag_ms,
            "payload": self.payload,
            "raw": self.raw,
            "schema_fingerprint": self.schema_fingerprint,
            "occurrence_id": p.occurrence_id,
            "origin": p.origin,
            "request_id": p.request_id,
            "stream": p.stream,
            "shard_id": p.shard_id,
            "sequence_number": p.sequence_number,
            "sub_sequence_number": p.sub_sequence_number,
            "partition_key": p.partition_key,
            "arrival_time": p.arrival_time,
            "schema_ref": self.schema_ref,
        }

    @classmethod
    def from_avro(cls, row: dict[str, Any]) -> ArchiveRecord:
        prov: dict[str, Any] = {name: row.get(name) for name in Provenance.__slots__}
        fields: dict[str, Any] = {n: row.get(n) for n in cls.__slots__ if n != "provenance"}
        return cls(provenance=Provenance(**prov), **fields)

    def envelope(self) -> dict[str, Any] | None:
        """The event as the producer meant it (None for a rejected record)."""
        if self.status == "REJECTED" or self.payload is None or self.event_time is None:
            return None
        return {
            "source": self.source,
            "event_type": self.event_type,
            "entity_id": self.entity_id,
            "event_time": self.event_time.isoformat().replace("+00:00", "Z"),
            "payload": json.loads(self.payload),
            "idempotency_key": self.idempotency_key,
        }
