"""One stream's tap in one process: discover shards, take leases, run a reader per shard.

* **Shards** are listed with pagination, again every ``discover_interval_s`` and whenever a
  shard is read to its end, so shards made by a reshard are picked up while running.
* **Parents first.** A shard is read only once each of its parents (``ParentShardId``,
  ``AdjacentParentShardId``) still listed is ``finished`` (closed and read to its end), so
  per-partition-key order holds across a split or merge. A child starts at TRIM_HORIZON
  whatever ``--from`` says: its parent's reader already decided where the stream starts.
* **Leases.** Several workers share a stream: each takes free or expired leases up to its fair
  share (ceil(unfinished shards / live workers)); a lease is renewed while its shard is read and
  given up on exit; a worker that dies stops renewing, and its shards are taken over once the
  lease time passes.
* ``once``: drain every shard to its tip (or end), then return. A shard leased by another
  worker is waited for until that lease expires (a dead worker's), at most one lease time;
  if it is still held then (a live worker renews it), ``ShardsUnread`` names it: ``once``
  never returns as if drained with a shard left unread.
* **Enhanced fan-out** (``TapOptions.fan_out``): the stream consumer is found or registered
  and waited for once, before any shard is read; each shard is then read by a
  ``FanOutReader`` (SubscribeToShard) instead of a polling ``ShardReader``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consumers.ingest import IngestSink
from consumers.tap.decode import RecordDecoder
from consumers.tap.fanout import FanOut, FanOutReader, ensure_consumer
from consumers.tap.shard import Outcome, ReaderOptions, ShardReader
from consumers.tap.summary import TapSummary
from infra.clock import Clock
from infra.errors import KitError
from infra.kinesis import Shard, StartAt, StartKind, StreamPort
from infra.leases import Lease, LeaseStore
from infra.metrics import Metrics

log = logging.getLogger(__name__)

DEFAULT_DISCOVER_INTERVAL_S = 10.0
STOP_POLL_S = 0.25
HELD_GRACE_S = 1.0  # past a held lease's expiry, before ``once`` gives up on its shard


class ShardsUnread(KitError):
    """``once`` could not read some shards: other workers kept their leases."""

    def __init__(self, message: str, *, shards: list[str], summary: TapSummary) -> None:
        super().__init__(message)
        self.shards = shards
        self.summary = summary


@dataclass(frozen=True, slots=True)
class TapOptions:
    start: StartAt = field(default_factory=lambda: StartAt(StartKind.TRIM_HORIZON))
    reader: ReaderOptions = field(default_factory=ReaderOptions)
    discover_interval_s: float = DEFAULT_DISCOVER_INTERVAL_S
    max_shards: int | None = None  # None: a fair share of the stream's shards
    fan_out: FanOut | None = None  # None: shared-throughput polling (GetRecords)


@dataclass
class _Running:
    reader: ShardReader
    thread: threading.Thread
    outcome: Outcome | None = None
    error: BaseException | None = None


class TapWorker:
    def __init__(
        self,
        stream: str,
        *,
        port: StreamPort,
        leases: LeaseStore,
        sink: IngestSink,
        decoder: RecordDecoder,
        clock: Clock,
        metrics: Metrics,
        options: TapOptions = TapOptions(),
        worker_id: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self._port = port
        self._leases = leases
        self._sink = sink
        self._decoder = decoder
        self._clock = clock
        self._metrics = metrics
        self._opt = options
        self.worker_id = worker_id or f"pik-{uuid.uuid4().hex[:12]}"
        self._monotonic = monotonic
        self.summary = TapSummary(stream, self.worker_id, dry_run=sink.dry_run)
        self._wake = threading.Event()
        self._readers_stop = threading.Event()
        self._consumer_arn: str | None = None

    def _now_ms(self) -> int:
        return int(self._clock.now().timestamp() * 1000)

    def run(
        self,
        *,
        once: bool,
        stop: threading.Event | None = None,
        healthy: Callable[[], None] | None = None,
    ) -> TapSummary:
        """Read until ``stop`` is set (or, with ``once``, until every readable shard is drained).

        A reader's failure (a missing stream or table) stops the others and is raised here.
        ``healthy`` is called after each discovery round that worked (shards listed, leases
        read). A worker may run again after a failure: it resumes from the leases' checkpoints.
        """
        stop = stop or threading.Event()
        self._readers_stop = threading.Event()
        if self._opt.fan_out is not None and self._consumer_arn is None:
            consumer = ensure_consumer(
                self._port,
                self.stream,
                self._opt.fan_out,
                stop,
                register=not self._sink.dry_run,
                monotonic=self._monotonic,
            )
            if consumer is None:  # stopped before it was ACTIVE: nothing was read
                return self.summary
            self._consumer_arn = self.summary.efo_consumer = consumer.arn
        running: dict[str, _Running] = {}
        done: set[str] = set()  # drained or finished in this run (once), or finished
        failure: BaseException | None = None
        unread: ShardsUnread | None = None
        give_up: dict[str, float] = {}  # once: held shard → when to stop waiting for it
        last_discovery = -math.inf
        try:
            while not stop.is_set():
                discovered = started = 0
                due = self._monotonic() - last_discovery >= self._opt.discover_interval_s
                if self._wake.is_set() or due:
                    self._wake.clear()
                    failure = self._reap(running, done, once)
                    if failure is not None:
                        break
                    started = self._start_ready(running, done, once)
                    discovered, last_discovery = 1, self._monotonic()
                    if healthy is not None:
                        healthy()
                if once and discovered and not running and not started:
                    held = sorted(self.summary.held_elsewhere)
                    if not held:
                        break
                    unread = self._wait_for_held(held, give_up)
                    if unread is not None:
                        break
                    # look again just past the earliest expiry (or a release, found sooner)
                    soonest = min(give_up[s] for s in held) - HELD_GRACE_S / 2
                    interval = self._opt.discover_interval_s
                    last_discovery = min(self._monotonic(), soonest - interval)
                self._wake.wait(0.05 if once else STOP_POLL_S)
        finally:
            self._readers_stop.set()
            for item in running.values():
                item.thread.join()
            failure = failure or self._reap(running, done, once)
        if failure is not None:
            raise failure
        if unread is not None:
            raise unread
        return self.summary

    def _wait_for_held(self, held: list[str], give_up: dict[str, float]) -> ShardsUnread | None:
        """``once`` with shards leased elsewhere: note how long to wait for each (until its
        lease expires, at most one lease time, plus a grace); the error once that is over."""
        now_m = self._monotonic()
        new = [s for s in held if s not in give_up]
        if new:
            leases = self._leases.get_many(self.stream, new)
            now, lease_ms = self._now_ms(), self._opt.reader.lease_ms
            for sid in new:
                left = leases[sid].expires_ms - now if sid in leases else 0
                give_up[sid] = now_m + min(max(left, 0), lease_ms) / 1000 + HELD_GRACE_S
            wait_s = max(give_up[s] for s in new) - now_m
            owners = sorted({leases[s].owner or "?" for s in new if s in leases})
            log.warning(
                "shards leased by other workers: waiting up to %.1f s for the leases to expire",
                wait_s,
                extra={"stream": self.stream, "shards": new, "owners": owners},
            )
        if any(give_up[s] > now_m for s in held):
            return None
        return ShardsUnread(
            f"--once could not read {len(held)} shard(s) of {self.stream}: "
            f"{', '.join(held)} stayed leased by other workers past their lease time "
            "(a live worker renews them; stop it, or run without --once)",
            shards=held,
            summary=self.summary,
        )

    # -- shards and leases ---------------------------------------------------------------------
    def _start_ready(self, running: dict[str, _Running], done: set[str], once: bool) -> int:
        shards = self._port.list_shards(self.stream)
        listed = {s.shard_id for s in shards}
        leases = self._leases.get_many(self.stream, sorted(listed))
        finished = {s for s, lease in leases.items() if lease.finished}
        now = self._now_ms()
        share = self._share(shards, leases, finished, now)
        started = 0
        self.summary.held_elsewhere.clear()
        for shard in shards:
            sid = shard.shard_id
            if sid in running or sid in done or sid in finished:
                continue
            if any(p in listed and p not in finished for p in shard.parents):
                continue  # its parents first
            current = leases.get(sid)
            if current is not None and current.held_by_other(self.worker_id, now):
                self.summary.held_elsewhere.add(sid)
                continue
            if len(running) >= share:
                break
            lease = self._leases.acquire(
                self.stream, sid, self.worker_id, now, self._opt.reader.lease_ms
            )
            if lease is None:
                self.summary.held_elsewhere.add(sid)
                continue
            running[sid] = self._launch(shard, lease, listed, once)
            started += 1
        if not once and len(running) < share:
            started += self._steal_one(shards, leases, running, listed, share, now)
        return started

    def _steal_one(
        self,
        shards: list[Shard],
        leases: dict[str, Lease],
        running: dict[str, _Running],
        listed: set[str],
        share: int,
        now: int,
    ) -> int:
        """Below our share while a live worker holds more than its own: take one of its
        shards (one per round, so that workers converge without fighting)."""
        held: dict[str, list[str]] = defaultdict(list)
        for sid, lease in leases.items():
            live = lease.owner and lease.expires_ms > now and not lease.finished
            if live and lease.owner and lease.owner != self.worker_id:
                held[lease.owner].append(sid)
        if not held:
            return 0
        victim, victims_shards = max(held.items(), key=lambda item: len(item[1]))
        if len(victims_shards) <= share:
            return 0
        by_id = {s.shard_id: s for s in shards}
        sid = sorted(victims_shards)[-1]
        taken = self._leases.steal(
            self.stream, sid, victim, self.worker_id, now, self._opt.reader.lease_ms
        )
        if taken is None:
            return 0
        log.info("took a shard over to balance", extra={"shard": sid, "from": victim})
        self.summary.held_elsewhere.discard(sid)
        running[sid] = self._launch(by_id[sid], taken, listed, once=False)
        return 1

    def _share(
        self, shards: list[Shard], leases: dict[str, Lease], finished: set[str], now: int
    ) -> int:
        if self._opt.max_shards is not None:
            return self._opt.max_shards
        open_shards = [s for s in shards if s.shard_id not in finished]
        owners = {
            lease.owner
            for lease in leases.values()
            if lease.owner and lease.expires_ms > now and not lease.finished
        }
        owners.add(self.worker_id)
        return max(1, math.ceil(len(open_shards) / len(owners)))

    def _launch(self, shard: Shard, lease: Lease, listed: set[str], once: bool) -> _Running:
        start = self._opt.start
        if any(p in listed for p in shard.parents):
            start = StartAt(StartKind.TRIM_HORIZON)
        summary = self.summary.shard(shard.shard_id)
        summary.checkpoint = lease.checkpoint
        reader_kwargs: dict[str, Any] = {
            "stream": self.stream,
            "port": self._port,
            "leases": self._leases,
            "lease": lease,
            "sink": self._sink,
            "decoder": self._decoder,
            "clock": self._clock,
            "metrics": self._metrics,
            "summary": summary,
            "start": start,
            "stop": self._readers_stop,
            "once": once,
            "options": self._opt.reader,
            "monotonic": self._monotonic,
        }
        reader = (
            ShardReader(**reader_kwargs)
            if self._consumer_arn is None
            else FanOutReader(consumer_arn=self._consumer_arn, **reader_kwargs)
        )
        item = _Running(reader, threading.Thread())

        def target() -> None:
            try:
                item.outcome = reader.run()
            except BaseException as exc:  # handed to run(), which raises it
                item.error = exc
            finally:
                self._wake.set()

        item.thread = threading.Thread(
            target=target, name=f"tap:{self.stream}:{shard.shard_id}", daemon=True
        )
        item.thread.start()
        log.info(
            "reading shard",
            extra={"stream": self.stream, "shard": shard.shard_id, "checkpoint": lease.checkpoint},
        )
        return item

    def _reap(
        self, running: dict[str, _Running], done: set[str], once: bool
    ) -> BaseException | None:
        failure: BaseException | None = None
        for sid in [s for s, item in running.items() if not item.thread.is_alive()]:
            item = running.pop(sid)
            if item.error is not None:
                failure = failure or item.error
                continue
            if item.outcome is Outcome.FINISHED or once:
                done.add(sid)
        return failure
