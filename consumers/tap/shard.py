"""One shard's read loop: GetRecords → de-aggregate/decode → ``sink.ingest`` → checkpoint.

(``consumers/tap/fanout.py`` reads with SubscribeToShard instead and shares everything after the
read: ingest in groups, checkpoint, lease renewal, the lag gauge.)

The checkpoint is written only after ``sink.ingest`` returned, i.e. after the archive files and
index items of the batch are durable. A crash before that re-reads the batch from the previous
checkpoint; the batch is then cut the same way (same label, same first and last positions, same
``at``: the first record's arrival time) and the sink absorbs what was already committed as
redeliveries. Limits: at most ``1 / min_call_interval_s`` GetRecords per second on the shard
(Kinesis allows 5), exponential backoff with full jitter on throttling, a new iterator from the
checkpoint when one expires, and a failed ingest retried with backoff (never skipped).

After a (re)start the first records read may repeat what an earlier reader of the shard made
durable without checkpointing it: at most the one group it was ingesting, so within
``MAX_GET_RECORDS_LIMIT`` Kinesis records of the checkpoint, and never past the first record
that proves new (accepted, not a redelivery: an earlier reader claims identities before it
records rejections). Those records are marked ``maybe_redelivered``, so that the sink absorbs a
rejected one read again as a redelivery, as it does accepted ones.

A record whose writer schema must be looked up in a remote registry that cannot answer
(``RegistryUnavailable``: down, throttling, refusing the credentials) is not decided: what was
decoded before it is made durable and checkpointed, then the reader waits with backoff (renewing
its lease) and decodes the record again, so nothing is checkpointed past it until the registry
answers. Quarantining it instead would be final: the record read again later is a redelivery of
its rejection. With ``once`` the reader gives up after ``ONCE_REGISTRY_ATTEMPTS`` and the failure
is raised (the checkpoint still before the record).

Every read sets the shard's ``MillisBehindLatest`` gauge (``LAG_GAUGE``, labels stream and
shard); the series is removed when the reader ends, since the shard is then read elsewhere, by
no one (finished), or the tap stopped.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from consumers.ingest import IngestResult, IngestSink, Submission
from consumers.tap.decode import RecordDecoder, StreamRecord
from consumers.tap.summary import ShardSummary
from infra.clock import Clock
from infra.errors import BackendError, ResourceMissing
from infra.kinesis import (
    MAX_GET_RECORDS_LIMIT,
    IteratorExpired,
    Page,
    StartAt,
    StreamPort,
    Throttled,
)
from infra.leases import DEFAULT_LEASE_MS, Lease, LeaseLost, LeaseStore
from infra.metrics import Metrics
from infra.schema_registry import RegistryUnavailable
from schemas.envelope import Status

log = logging.getLogger(__name__)

KINESIS_GET_RECORDS_PER_SECOND = 5
DEFAULT_GET_LIMIT = 2_500
DEFAULT_BATCH_RECORDS = 2_500
DEFAULT_PAGE_BYTES = 4 * 1024 * 1024
FIRST_PAGE_LIMIT = 100
KINESIS_SUBSCRIBES_PER_SECOND = 1  # per shard and consumer
LAG_GAUGE = "TapMillisBehindLatest"
ONCE_REGISTRY_ATTEMPTS = 5  # --once: registry lookups per record before the run fails


class Outcome(StrEnum):
    FINISHED = "finished"  # closed and read to its end: children may be read
    AT_TIP = "at_tip"  # --once: nothing more to read now
    STOPPED = "stopped"  # asked to stop (SIGTERM / SIGINT)
    LOST = "lease_lost"  # another worker took the shard over


@dataclass(frozen=True, slots=True)
class ReaderOptions:
    limit: int = DEFAULT_GET_LIMIT
    min_call_interval_s: float = 1 / KINESIS_GET_RECORDS_PER_SECOND
    idle_wait_s: float = 1.0
    backoff_base_s: float = 0.1
    backoff_max_s: float = 5.0
    lease_ms: int = DEFAULT_LEASE_MS
    max_batch_records: int = DEFAULT_BATCH_RECORDS  # user records per sink.ingest call
    page_bytes: int = DEFAULT_PAGE_BYTES
    min_subscribe_interval_s: float = 1 / KINESIS_SUBSCRIBES_PER_SECOND


def full_jitter(attempt: int, base: float, cap: float) -> float:
    """AWS's "full jitter": uniform in [0, min(cap, base * 2^attempt)]."""
    return random.uniform(0, min(cap, base * 2**attempt))


class ShardReader:
    def __init__(
        self,
        *,
        stream: str,
        port: StreamPort,
        leases: LeaseStore,
        lease: Lease,
        sink: IngestSink,
        decoder: RecordDecoder,
        clock: Clock,
        metrics: Metrics,
        summary: ShardSummary,
        start: StartAt,
        stop: threading.Event,
        once: bool,
        options: ReaderOptions = ReaderOptions(),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self._port = port
        self._leases = leases
        self.lease = lease
        self._sink = sink
        self._decoder = decoder
        self._clock = clock
        self._metrics = metrics
        self.summary = summary
        self._start = start
        self._stop = stop
        self._once = once
        self._opt = options
        self._monotonic = monotonic
        self._last_call = -1e9
        self._last_renewal = monotonic()
        self.children: tuple[str, ...] = ()
        self._limit = min(options.limit, FIRST_PAGE_LIMIT)  # grows once record sizes are seen
        self._may_repeat = MAX_GET_RECORDS_LIMIT  # Kinesis records that may be redelivered

    @property
    def shard_id(self) -> str:
        return self.lease.shard_id

    def _now_ms(self) -> int:
        return int(self._clock.now().timestamp() * 1000)

    def _position(self) -> StartAt:
        if self.lease.checkpoint is not None:
            return StartAt.after(self.lease.checkpoint)
        return self._start

    def run(self) -> Outcome:
        """Read until the shard is finished, at its tip (``once``), stopped or lost. The lease is
        given up afterwards, also when reading failed (the failure is then raised), so that
        another worker need not wait for it to expire."""
        try:
            outcome = self._loop()
        except LeaseLost as exc:
            log.warning("lease lost", extra={"stream": self.stream, "shard": self.shard_id})
            log.debug("%s", exc)
            outcome = Outcome.LOST
        except BaseException:
            self._end()
            raise
        self.summary.outcome = outcome.value
        self._end(release=outcome is not Outcome.LOST)
        return outcome

    def _end(self, *, release: bool = True) -> None:
        self._metrics.clear_gauge(LAG_GAUGE, stream=self.stream, shard=self.shard_id)
        if release:
            try:
                self._leases.release(self.lease)
            except BackendError:  # the lease then simply expires
                log.warning("could not release lease", extra={"shard": self.shard_id})

    def _loop(self) -> Outcome:
        iterator = self._port.iterator(self.stream, self.shard_id, self._position())
        throttled = 0
        while not self._stop.is_set():
            self._pace()
            self._renew_if_due()
            try:
                page = self._port.get_records(self.stream, self.shard_id, iterator, self._limit)
            except Throttled:
                throttled += 1
                self.summary.throttled += 1
                self._stop.wait(
                    full_jitter(throttled, self._opt.backoff_base_s, self._opt.backoff_max_s)
                )
                continue
            except IteratorExpired:
                self.summary.expired_iterators += 1
                iterator = self._port.iterator(self.stream, self.shard_id, self._position())
                continue
            throttled = 0
            self.summary.get_records_calls += 1
            if not self._handle(page):
                return Outcome.STOPPED
            if page.next_iterator is None:
                self._finish(page.child_shards)
                return Outcome.FINISHED
            iterator = page.next_iterator
            if not page.records:
                if self._once and (page.millis_behind_latest or 0) == 0:
                    return Outcome.AT_TIP
                if not self._once:
                    self._stop.wait(self._opt.idle_wait_s)
        return Outcome.STOPPED

    def _finish(self, children: tuple[str, ...]) -> None:
        """The shard is closed and read to its end: its children may be read now."""
        self.children = children
        self.lease = self._leases.checkpoint(
            self.lease, None, self._now_ms(), self._opt.lease_ms, finished=True
        )
        self.summary.finished = True

    def _handle(self, page: Page) -> bool:
        """Ingest a page, a group of records at a time, checkpointing after each group.

        A group holds whole Kinesis records (an aggregate is never split) up to
        ``max_batch_records`` user records, so memory stays bounded however many user records
        the KPL packed into a page. False when stopped before all of the page was durable.
        """
        self.summary.millis_behind_latest = page.millis_behind_latest
        if page.millis_behind_latest is not None:
            self._metrics.set_gauge(
                LAG_GAUGE, page.millis_behind_latest, stream=self.stream, shard=self.shard_id
            )
        if not page.records:
            return True
        self._adapt_limit(page)
        group: list[StreamRecord] = []
        submissions: list[Submission] = []
        for record in page.records:
            try:
                subs = self._decoder.submissions(record)
            except RegistryUnavailable as exc:
                if submissions and not self._commit(group, submissions):
                    return False
                group, submissions = [], []
                found = self._wait_for_registry(record, exc)
                if found is None:
                    return False
                subs = found
            if submissions and len(submissions) + len(subs) > self._opt.max_batch_records:
                if not self._commit(group, submissions):
                    return False
                group, submissions = [], []
            group.append(record)
            submissions.extend(subs)
        return self._commit(group, submissions)

    def _wait_for_registry(
        self, record: StreamRecord, exc: RegistryUnavailable
    ) -> list[Submission] | None:
        """``record`` decoded once its schema registry answers; None when stopped first."""
        attempt = 0
        while True:
            attempt += 1
            self.summary.registry_waits += 1
            log.warning(
                "schema registry unavailable; waiting, nothing checkpointed past this record",
                extra={
                    "stream": self.stream,
                    "shard": self.shard_id,
                    "sequence": record.sequence_number,
                    "attempt": attempt,
                    "error": str(exc),
                },
            )
            if self._once and attempt >= ONCE_REGISTRY_ATTEMPTS:
                raise exc
            if self._stop.wait(full_jitter(attempt, 0.5, 30.0)):
                return None
            self._renew_if_due()
            try:
                return self._decoder.submissions(record)
            except RegistryUnavailable as again:
                exc = again

    def _commit(self, group: list[StreamRecord], submissions: list[Submission]) -> bool:
        if self._stop.is_set():  # SIGTERM between groups: what is durable is checkpointed
            return False
        if self._may_repeat > 0:
            submissions = [replace(s, maybe_redelivered=True) for s in submissions]
        results = self._ingest(submissions, group[0].arrival_time)
        if results is None:
            return False
        self._may_repeat -= len(group)
        if any(r.status is Status.ACCEPTED and not r.redelivery for r in results):
            self._may_repeat = 0  # new records from here on
        self.summary.add(len(group), results)  # durable now, whether or not we keep the lease
        last = group[-1].sequence_number
        self.lease = self._leases.checkpoint(
            self.lease, last, self._now_ms(), self._opt.lease_ms, finished=False
        )
        self._last_renewal = self._monotonic()
        self.summary.checkpoint = last
        return True

    def _adapt_limit(self, page: Page) -> None:
        """Fewer records per GetRecords when they are large (KPL aggregates), so that a page
        stays near ``page_bytes`` (AWS caps a page at 10 MB; emulators do not)."""
        size = sum(len(r.data) for r in page.records) / len(page.records)
        self._limit = max(1, min(self._opt.limit, int(self._opt.page_bytes / max(size, 1))))

    def _ingest(self, submissions: list[Submission], at: datetime) -> list[IngestResult] | None:
        label = f"{self.stream}-{self.shard_id}"
        attempt = 0
        while True:
            try:
                return self._sink.ingest(submissions, label=label, at=at)
            except ResourceMissing:
                raise
            except BackendError as exc:  # not durable: retry the same batch, never skip it
                attempt += 1
                self.summary.ingest_retries += 1
                log.warning(
                    "ingest failed; retrying the batch",
                    extra={"shard": self.shard_id, "attempt": attempt, "error": str(exc)},
                )
                if self._stop.wait(full_jitter(attempt, 0.5, 30.0)):
                    return None
                self._renew_if_due()

    def _pace(self, interval: float | None = None) -> None:
        """At most one call per ``interval`` (default: GetRecords' ``min_call_interval_s``)."""
        interval = self._opt.min_call_interval_s if interval is None else interval
        wait = self._last_call + interval - self._monotonic()
        if wait > 0:
            self._stop.wait(wait)
        self._last_call = self._monotonic()

    def _renew_if_due(self) -> None:
        if self._monotonic() - self._last_renewal >= self._opt.lease_ms / 3000:
            self.lease = self._leases.renew(self.lease, self._now_ms(), self._opt.lease_ms)
            self._last_renewal = self._monotonic()
