"""Enhanced fan-out: the tap's stream consumer, and a shard reader on SubscribeToShard.

* **The consumer.** ``ensure_consumer`` finds the stream's consumer of the configured name
  (default ``pik-tap``) or registers it, and waits until it is ACTIVE. Every worker of a stream
  uses the same consumer; a shard is still read by the one worker holding its lease.
* **Reading.** ``FanOutReader`` subscribes to its shard from the checkpoint
  (AFTER_SEQUENCE_NUMBER) or the start position, and ingests each event's records exactly as
  the polling reader ingests a page: checkpoints still move only after ``sink.ingest`` returned.
  A subscription ends on its own (after at most five minutes on AWS); the reader subscribes
  again after the last event's ``ContinuationSequenceNumber``. An event with ``ChildShards``
  (and no continuation) ends a closed shard, so parents are still read before children.
* **Trouble.** Another subscription open on the shard (``ResourceInUseException``, e.g. the
  previous owner's, until AWS notices it is gone), throttling and a broken event stream are
  retried with exponential backoff and full jitter; a SubscribeToShard call that fails for
  anything else (an endpoint without fan-out, such as moto) fails the tap with that reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from consumers.tap.shard import Outcome, ShardReader, full_jitter
from infra.errors import BackendError, ConfigError
from infra.kinesis import (
    ConsumerStatus,
    StartAt,
    StreamConsumer,
    StreamPort,
    Subscription,
    SubscriptionBroken,
    SubscriptionBusy,
    Throttled,
)

log = logging.getLogger(__name__)

DEFAULT_CONSUMER_NAME = "pik-tap"
CONSUMER_ACTIVE_TIMEOUT_S = 120.0  # AWS documents "a few seconds"; be patient
CONSUMER_POLL_S = 0.5
STOP_POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class FanOut:
    """Read with enhanced fan-out through the stream consumer called ``consumer_name``."""

    consumer_name: str = DEFAULT_CONSUMER_NAME
    active_timeout_s: float = CONSUMER_ACTIVE_TIMEOUT_S
    poll_s: float = CONSUMER_POLL_S


def ensure_consumer(
    port: StreamPort,
    stream: str,
    fan_out: FanOut,
    stop: threading.Event,
    *,
    register: bool = True,
    monotonic: Callable[[], float] = time.monotonic,
) -> StreamConsumer | None:
    """The stream's consumer of that name, registered when missing (unless ``register`` is
    false: a dry run writes nothing), once it is ACTIVE (a consumer being deleted is waited
    out, then registered again); None when ``stop`` is set meanwhile."""
    deadline = monotonic() + fan_out.active_timeout_s
    while True:
        found = port.consumer(stream, fan_out.consumer_name)
        if found is None and not register:
            raise ConfigError(
                f"stream consumer {fan_out.consumer_name!r} of {stream} is not registered and "
                "a dry run registers nothing: run without --efo, or once without DRY_RUN"
            )
        if found is None:
            found = port.register_consumer(stream, fan_out.consumer_name)
            log.info(
                "registered stream consumer",
                extra={"stream": stream, "consumer": found.arn},
            )
        if found.status is ConsumerStatus.ACTIVE:
            return found
        if monotonic() >= deadline:
            raise BackendError(
                f"stream consumer {fan_out.consumer_name!r} of {stream} is still "
                f"{found.status.value} after {fan_out.active_timeout_s:g} s",
                service="kinesis",
            )
        if stop.wait(fan_out.poll_s):
            return None


@contextmanager
def _closed_on_stop(subscription: Subscription, stop: threading.Event) -> Iterator[None]:
    """Close the subscription as soon as ``stop`` is set, so that a reader waiting for the
    next event (up to seconds apart) stops promptly; and always close it afterwards."""
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if stop.wait(STOP_POLL_S):
                subscription.close()
                return

    watcher = threading.Thread(target=watch, name="tap:efo-stop", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        subscription.close()
        watcher.join()


class FanOutReader(ShardReader):
    """A ``ShardReader`` that reads its shard through SubscribeToShard (see module doc)."""

    def __init__(self, *, consumer_arn: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._consumer_arn = consumer_arn
        self._resume_at = self._start
        self._failures = 0  # subscriptions in a row that failed before any event

    def _loop(self) -> Outcome:
        self._resume_at = self._position()
        self._failures = 0
        while not self._stop.is_set():
            if self._failures:
                attempt = self._failures
                delay = full_jitter(attempt, self._opt.backoff_base_s, self._opt.backoff_max_s)
                if self._stop.wait(delay):
                    break
            self._pace(self._opt.min_subscribe_interval_s)
            self._renew_if_due()
            try:
                subscription = self._port.subscribe(
                    self.stream, self._consumer_arn, self.shard_id, self._resume_at
                )
            except (SubscriptionBusy, Throttled) as exc:
                self._retry(exc)
                continue
            self.summary.subscriptions += 1
            with _closed_on_stop(subscription, self._stop):
                try:
                    outcome = self._read(subscription)
                except (SubscriptionBusy, Throttled, SubscriptionBroken) as exc:
                    if self._stop.is_set():
                        break
                    self._retry(exc)
                    continue
            if outcome is not None:
                return outcome
            # the subscription ended, as subscriptions do: subscribe again from where it was
        return Outcome.STOPPED

    def _read(self, subscription: Subscription) -> Outcome | None:
        """Ingest the subscription's events until it ends (None) or the shard's reading is
        over. ``_resume_at`` follows the events: a subscription that breaks off is taken up
        again after the last event ingested, not from where it started."""
        for event in subscription:
            self._failures = 0
            self._renew_if_due()
            if not self._handle(event):
                return Outcome.STOPPED
            if event.next_iterator is None:
                self._finish(event.child_shards)
                return Outcome.FINISHED
            self._resume_at = StartAt.after(event.next_iterator)
            if self._stop.is_set():
                return Outcome.STOPPED
            if self._once and not event.records and (event.millis_behind_latest or 0) == 0:
                return Outcome.AT_TIP
        return None

    def _retry(self, exc: BackendError) -> None:
        self._failures += 1
        self._count_retry(exc)

    def _count_retry(self, exc: BackendError) -> None:
        if isinstance(exc, Throttled):
            self.summary.throttled += 1
        else:
            self.summary.subscription_retries += 1
        log.info(
            "subscribing again",
            extra={"stream": self.stream, "shard": self.shard_id, "reason": str(exc)},
        )
