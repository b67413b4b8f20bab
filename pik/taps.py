"""Taps running in the background under supervision (``pik up``), and the tap options the
commands share. ``Kit.tap_worker`` builds one tap; ``Kit.start_taps`` starts them here."""

from __future__ import annotations

from dataclasses import dataclass

from consumers.tap.binding import TapBinding
from consumers.tap.shard import ReaderOptions
from consumers.tap.summary import TapSummary
from consumers.tap.worker import DEFAULT_DISCOVER_INTERVAL_S, TapOptions, TapWorker
from infra.leases import DEFAULT_LEASE_MS
from pik.supervisor import Supervisor


def default_binding(stream: str) -> TapBinding:
    """An unbound stream is read as envelope-shaped JSON (ARCHITECTURE.md's default mapping)."""
    return TapBinding(stream=stream)


def tap_options(*, lease_ms: int = DEFAULT_LEASE_MS) -> TapOptions:
    """Options for a lease time: leases renew every third of it, and shards are re-listed (new
    shards, expired leases) at least every half of it."""
    return TapOptions(
        reader=ReaderOptions(lease_ms=lease_ms),
        discover_interval_s=min(DEFAULT_DISCOVER_INTERVAL_S, lease_ms / 2000),
    )


@dataclass
class TapHandle:
    """Taps running in background threads under a ``Supervisor`` (``pik up``): a tap that fails
    is restarted with backoff and resumes from its leases' checkpoints; ``stop()`` flushes,
    checkpoints and releases every lease, then returns the summaries."""

    workers: list[TapWorker]
    supervisor: Supervisor

    def states(self) -> dict[str, str]:
        return self.supervisor.states()

    def stop(self, timeout: float = 60.0) -> list[TapSummary]:
        self.supervisor.stop(timeout)
        return [w.summary for w in self.workers]
