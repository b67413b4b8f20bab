"""Feeding the processor from a queue: long polls, batches of 10, per-message outcomes.

Handled messages are deleted; failed ones are made visible again after a back-off that grows
with their receive count, so a poison message reaches the dead-letter queue after the queue's
``maxReceiveCount`` receives — it is never deleted silently.

A dry run refuses before touching the queue (``DryRunRefused``): SQS has no way to look at a
message without receiving it, and every receive counts toward ``maxReceiveCount``, so a dry run
that received and handed back would, after a few runs, move every message to the dead-letter
queue.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consumers.processor import BatchOutcome, Processor
from infra.errors import KitError
from infra.queue import SQS_MAX_BATCH, WorkQueue

log = logging.getLogger(__name__)

DEFAULT_WAIT_S = 1  # long polls this short let a stop (Ctrl-C) be honoured within a second
DRAIN_WAIT_S = 1
MAX_RETRY_DELAY_S = 300


class DryRunRefused(KitError):
    """A dry run of the queue loop: refused, because receiving a message is not read-only."""


DRY_RUN_REFUSAL = (
    "DRY_RUN=true: pik process does not read the queue, because every receive counts toward "
    "its maxReceiveCount (repeated dry runs would move messages to the dead-letter queue); "
    "the queue, the aggregates and the archive are unchanged. Run without DRY_RUN to process."
)


def retry_delay(receive_count: int, base_s: float) -> int:
    """Exponential back-off in seconds for a message that failed ``receive_count`` times."""
    return int(min(MAX_RETRY_DELAY_S, base_s * 2 ** max(receive_count - 1, 0)))


@dataclass(slots=True)
class LoopSummary:
    batches: int = 0
    messages: int = 0
    failed: int = 0
    versions_written: int = 0
    unchanged: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    written: list[dict[str, Any]] = field(default_factory=list)
    released: int = 0  # handed back unhandled when stopped
    windows_recomputed: int = 0
    window_reads: int = 0

    def add(self, size: int, outcome: BatchOutcome) -> None:
        self.batches += 1
        self.messages += size - len(outcome.released)
        self.released += len(outcome.released)
        self.windows_recomputed += outcome.windows_recomputed
        self.window_reads += outcome.window_reads
        self.failed += len(outcome.failed)
        self.versions_written += len(outcome.written)
        self.unchanged += outcome.unchanged
        self.failures.update(outcome.failed)
        self.written.extend(v.to_json() for v in outcome.written)

    def to_json(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "messages": self.messages,
            "failed": self.failed,
            "versions_written": self.versions_written,
            "unchanged": self.unchanged,
            "failures": self.failures,
            "written": self.written,
        }


def run_queue(
    processor: Processor,
    queue: WorkQueue,
    *,
    once: bool,
    stop: threading.Event | None = None,
    wait_s: int = DEFAULT_WAIT_S,
    retry_base_s: float = 5.0,
    on_batch: Callable[[LoopSummary], None] | None = None,
) -> LoopSummary:
    """Consume until stopped; with ``once``, until a short poll finds the queue empty.
    ``on_batch`` sees the running summary after every batch (a progress display).

    Raises ``DryRunRefused`` for a dry-run processor, before any receive."""
    if processor.dry_run:
        raise DryRunRefused(DRY_RUN_REFUSAL)
    summary = LoopSummary()
    stop = stop or threading.Event()
    _loop(processor, queue, once, stop, wait_s, retry_base_s, summary, on_batch)
    return summary


def _loop(
    processor: Processor,
    queue: WorkQueue,
    once: bool,
    stop: threading.Event,
    wait_s: int,
    retry_base_s: float,
    summary: LoopSummary,
    on_batch: Callable[[LoopSummary], None] | None,
) -> None:
    while not stop.is_set():
        batch = queue.receive(SQS_MAX_BATCH, min(wait_s, DRAIN_WAIT_S) if once else wait_s)
        if not batch:
            if once:
                break
            continue
        outcome = processor.process(
            [(m.message_id, m.body) for m in batch], should_stop=stop.is_set
        )
        released = set(outcome.released)
        done = [m for m in batch if m.message_id not in outcome.failed.keys() | released]
        failed = [m for m in batch if m.message_id in outcome.failed]
        queue.delete(done)
        for message in failed:
            queue.retry_later([message], retry_delay(message.receive_count, retry_base_s))
        if released:  # stopped mid-batch: visible again now, for the next processor
            queue.retry_later([m for m in batch if m.message_id in released], 0)
        summary.add(len(batch), outcome)
        if on_batch is not None:
            on_batch(summary)
