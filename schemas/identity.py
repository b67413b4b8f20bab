"""Event identity: a SHA-256 over canonical JSON, stable across processes and Python versions.

Identity (contract, ARCHITECTURE.md): with an idempotency key, of ``source, event_type,
entity_id, idempotency_key``; without one, of ``source, event_type, entity_id, event_time``
(UTC, microseconds) and the canonical payload. A rejected record has no envelope to speak of,
so its id is the digest of its raw bytes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from schemas.envelope import Event, format_time

_IDENTITY_VERSION = "pik.v1"
_MAX_SAFE_INTEGER = 2**53


def _normalise(value: Any) -> Any:
    """Integral floats print as integers (as RFC 8785 does), so 10.0 and 10 are one value."""
    if isinstance(value, float) and value.is_integer() and abs(value) < _MAX_SAFE_INTEGER:
        return int(value)
    if isinstance(value, dict):
        return {key: _normalise(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalise(item) for item in value]
    return value


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text, no NaN: the same value always prints the same."""
    return json.dumps(
        _normalise(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def _digest(parts: list[Any]) -> str:
    return hashlib.sha256(canonical_json(parts).encode("utf-8")).hexdigest()


def event_id(event: Event) -> str:
    head = [_IDENTITY_VERSION, event.source, event.event_type, event.entity_id]
    if event.idempotency_key is not None:
        return _digest([*head, "key", event.idempotency_key])
    return _digest([*head, "content", format_time(event.event_time), event.payload])


def rejected_event_id(raw: bytes) -> str:
    return hashlib.sha256(b"pik.v1.rejected\0" + raw).hexdigest()
