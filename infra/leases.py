"""Shard leases and checkpoints: the ``LeaseStore`` port and its in-memory adapter.

One item per (stream, shard) in the leases table (``lease_key = "<stream>#<shard id>"``): who
holds the shard and until when, the last sequence number whose records are durable in the archive
and index (the checkpoint), and whether the shard was read to its end (``finished``; its children
may then be read). Every write is conditional on the writer holding the lease, so a worker that
lost its lease (it stalled past the lease time and another took over) can never move a
checkpoint; taking a lease succeeds only when it is free, expired, or already ours.

Times are epoch milliseconds from the injected clock: workers' clocks must agree to within a
fraction of the lease time (NTP is enough for the default of 30 s).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Protocol

from infra.errors import KitError

DEFAULT_LEASE_MS = 30_000


class LeaseLost(KitError):
    """Another worker holds the shard now: stop reading it (what was ingested stays)."""


@dataclass(frozen=True, slots=True)
class Lease:
    stream: str
    shard_id: str
    owner: str | None = None
    expires_ms: int = 0
    checkpoint: str | None = None
    finished: bool = False

    @property
    def key(self) -> str:
        return lease_key(self.stream, self.shard_id)

    def held_by_other(self, me: str, now_ms: int) -> bool:
        return self.owner is not None and self.owner != me and self.expires_ms > now_ms


def lease_key(stream: str, shard_id: str) -> str:
    return f"{stream}#{shard_id}"


class LeaseStore(Protocol):
    def get_many(self, stream: str, shard_ids: list[str]) -> dict[str, Lease]: ...

    def acquire(
        self, stream: str, shard_id: str, owner: str, now_ms: int, duration_ms: int
    ) -> Lease | None:
        """The lease, now ours; None when another worker holds it."""
        ...

    def steal(
        self, stream: str, shard_id: str, victim: str, owner: str, now_ms: int, duration_ms: int
    ) -> Lease | None:
        """Take a live lease from ``victim`` (which holds more than its share); None when it
        is not the victim's any more. The victim learns at its next renewal or checkpoint."""
        ...

    def renew(self, lease: Lease, now_ms: int, duration_ms: int) -> Lease:
        """Extend our lease; ``LeaseLost`` when it is not ours any more."""
        ...

    def checkpoint(
        self, lease: Lease, sequence: str | None, now_ms: int, duration_ms: int, *, finished: bool
    ) -> Lease:
        """Record progress (and renew); ``LeaseLost`` when the lease is not ours any more."""
        ...

    def release(self, lease: Lease) -> None:
        """Give the lease up now (best effort: a lost lease is left as it is)."""
        ...


class MemoryLeaseStore:
    """Leases in memory with the DynamoDB adapter's conditions, for unit tests."""

    def __init__(self) -> None:
        self.leases: dict[str, Lease] = {}
        self._lock = threading.Lock()

    def get_many(self, stream: str, shard_ids: list[str]) -> dict[str, Lease]:
        with self._lock:
            found = (self.leases.get(lease_key(stream, s)) for s in shard_ids)
            return {lease.shard_id: lease for lease in found if lease is not None}

    def acquire(
        self, stream: str, shard_id: str, owner: str, now_ms: int, duration_ms: int
    ) -> Lease | None:
        with self._lock:
            current = self.leases.get(lease_key(stream, shard_id)) or Lease(stream, shard_id)
            if current.held_by_other(owner, now_ms):
                return None
            lease = replace(current, owner=owner, expires_ms=now_ms + duration_ms)
            self.leases[lease.key] = lease
            return lease

    def steal(
        self, stream: str, shard_id: str, victim: str, owner: str, now_ms: int, duration_ms: int
    ) -> Lease | None:
        with self._lock:
            current = self.leases.get(lease_key(stream, shard_id))
            if current is None or current.owner != victim:
                return None
            lease = replace(current, owner=owner, expires_ms=now_ms + duration_ms)
            self.leases[lease.key] = lease
            return lease

    def _ours(self, lease: Lease) -> Lease:
        current = self.leases.get(lease.key)
        if current is None or current.owner != lease.owner:
            holder = current.owner if current else None
            raise LeaseLost(f"lease on {lease.stream}/{lease.shard_id} is held by {holder}")
        return current

    def renew(self, lease: Lease, now_ms: int, duration_ms: int) -> Lease:
        with self._lock:
            renewed = replace(self._ours(lease), expires_ms=now_ms + duration_ms)
            self.leases[lease.key] = renewed
            return renewed

    def checkpoint(
        self, lease: Lease, sequence: str | None, now_ms: int, duration_ms: int, *, finished: bool
    ) -> Lease:
        with self._lock:
            current = self._ours(lease)
            updated = replace(
                current,
                checkpoint=sequence if sequence is not None else current.checkpoint,
                finished=finished or current.finished,
                expires_ms=now_ms + duration_ms,
            )
            self.leases[lease.key] = updated
            return updated

    def release(self, lease: Lease) -> None:
        with self._lock:
            current = self.leases.get(lease.key)
            if current is not None and current.owner == lease.owner:
                self.leases[lease.key] = replace(current, owner=None, expires_ms=0)


class DryRunLeaseStore(MemoryLeaseStore):
    """DRY_RUN: reads the real checkpoints once, then keeps every write in memory."""

    def __init__(self, real: LeaseStore) -> None:
        super().__init__()
        self._real = real

    def get_many(self, stream: str, shard_ids: list[str]) -> dict[str, Lease]:
        missing = [s for s in shard_ids if lease_key(stream, s) not in self.leases]
        if missing:
            found = self._real.get_many(stream, missing)
            with self._lock:
                for shard_id in missing:
                    lease = found.get(shard_id, Lease(stream, shard_id))
                    self.leases.setdefault(lease.key, replace(lease, owner=None, expires_ms=0))
        return super().get_many(stream, shard_ids)
