"""The stream port the tap reads through, its values and errors, and an in-memory stream.

``StreamPort`` is what a shard reader needs from Kinesis: shards, iterators, pages of records
(shared-throughput polling), and for enhanced fan-out a registered stream consumer and
subscriptions (SubscribeToShard), each an iterator of pages that ends on its own (after at most
five minutes on AWS). ``BotoKinesis`` (``infra/kinesis_boto.py``) adapts boto3 to it;
``MemoryStream`` here is a faithful-enough fake for unit tests (closed parents readable,
``ChildShards`` at a parent's end, iterators that expire, throttling and busy subscriptions on
demand).

Errors (all ``KitError``)::

    BackendError
     ├── Throttled          ProvisionedThroughputExceeded and friends: back off, then retry
     ├── IteratorExpired    ExpiredIteratorException: get a new iterator from the checkpoint
     ├── SubscriptionBusy   ResourceInUseException: another subscription of this consumer is
     │                      open on the shard: back off, then subscribe again
     └── SubscriptionBroken the event stream broke off (connection, error event): subscribe
                            again from the last position
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from infra import errors
from infra.errors import BackendError, ConfigError, KitError, ResourceMissing


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One Kinesis record as read (GetRecords, SubscribeToShard or a Lambda event)."""

    stream: str
    shard_id: str
    sequence_number: str
    partition_key: str
    arrival_time: datetime
    data: bytes


MAX_GET_RECORDS_LIMIT = 10_000


class Throttled(errors.Throttled):
    """A shard's read or write throughput (the tap backs off and reads again)."""


class IteratorExpired(BackendError):
    pass


class SubscriptionBusy(BackendError):
    pass


class SubscriptionBroken(BackendError):
    pass


class StartKind(StrEnum):
    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"
    AT_TIMESTAMP = "AT_TIMESTAMP"
    AFTER_SEQUENCE_NUMBER = "AFTER_SEQUENCE_NUMBER"


@dataclass(frozen=True, slots=True)
class StartAt:
    """Where a shard iterator starts."""

    kind: StartKind
    sequence_number: str | None = None
    timestamp: datetime | None = None

    @classmethod
    def parse(cls, text: str) -> StartAt:
        """``trim_horizon`` | ``latest`` | an ISO time with an offset (AT_TIMESTAMP)."""
        lowered = text.strip().lower()
        if lowered == "trim_horizon":
            return cls(StartKind.TRIM_HORIZON)
        if lowered == "latest":
            return cls(StartKind.LATEST)
        from schemas.envelope import parse_time

        try:
            return cls(StartKind.AT_TIMESTAMP, timestamp=parse_time(text.strip()))
        except ValueError:
            raise ConfigError(
                f"--from {text!r}: expected trim_horizon, latest or an ISO time with a UTC "
                "offset (e.g. 2025-12-29T00:00:00Z)"
            ) from None

    @classmethod
    def after(cls, sequence_number: str) -> StartAt:
        return cls(StartKind.AFTER_SEQUENCE_NUMBER, sequence_number=sequence_number)


@dataclass(frozen=True, slots=True)
class Shard:
    shard_id: str
    parent_shard_id: str | None = None
    adjacent_parent_shard_id: str | None = None
    ending_sequence_number: str | None = None  # set once the shard is closed

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(p for p in (self.parent_shard_id, self.adjacent_parent_shard_id) if p)


@dataclass(frozen=True, slots=True)
class Page:
    """A GetRecords page, or one SubscribeToShard event.

    ``next_iterator`` is the next shard iterator (GetRecords) or the event's
    ``ContinuationSequenceNumber`` (SubscribeToShard: subscribe again after it); None when the
    shard is closed and read to its end, with ``child_shards`` then listing its children.
    """

    records: list[StreamRecord]
    next_iterator: str | None
    millis_behind_latest: int | None
    child_shards: tuple[str, ...] = ()


class ConsumerStatus(StrEnum):
    CREATING = "CREATING"
    DELETING = "DELETING"
    ACTIVE = "ACTIVE"


@dataclass(frozen=True, slots=True)
class StreamConsumer:
    """A registered enhanced fan-out consumer of one stream."""

    name: str
    arn: str
    status: ConsumerStatus


class Subscription(Protocol):
    """One SubscribeToShard event stream: pages until it ends (iteration stops) or breaks
    (``SubscriptionBroken``, ``SubscriptionBusy``, ``Throttled``). ``close`` may be called from
    another thread, to end a subscription that is waiting for its next event."""

    def __iter__(self) -> Iterator[Page]: ...

    def close(self) -> None: ...


class StreamPort(Protocol):
    def list_shards(self, stream: str) -> list[Shard]: ...

    def iterator(self, stream: str, shard_id: str, start: StartAt) -> str: ...

    def get_records(self, stream: str, shard_id: str, iterator: str, limit: int) -> Page: ...

    def consumer(self, stream: str, name: str) -> StreamConsumer | None:
        """The stream's consumer of that name, None when there is none."""
        ...

    def register_consumer(self, stream: str, name: str) -> StreamConsumer:
        """Register a consumer (or return the one of that name registered meanwhile)."""
        ...

    def subscribe(
        self, stream: str, consumer_arn: str, shard_id: str, start: StartAt
    ) -> Subscription: ...


def sequence_key(sequence_number: str) -> int:
    """Sequence numbers compare as integers, and only within one shard."""
    return int(sequence_number)


# -- in-memory stream for unit tests ----------------------------------------------------------
@dataclass
class _MemShard:
    shard: Shard
    records: list[StreamRecord] = field(default_factory=list)
    closed: bool = False
    children: tuple[str, ...] = ()


class MemoryStream:
    """A stream in memory: put, split, merge; reads behave as Kinesis documents them."""

    def __init__(self, name: str, shards: int = 1, clock_now: datetime | None = None) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._shards: dict[str, _MemShard] = {}
        self._next_shard = 0
        self._next_sequence = 100
        self._iterators: dict[str, tuple[str, int]] = {}
        self.expired: set[str] = set()
        self.throttle_next = 0  # this many get_records calls answer Throttled first
        self.calls: list[str] = []
        self.consumers: dict[str, StreamConsumer] = {}
        self.activation_polls = 1  # a new consumer is CREATING for this many look-ups
        self.busy_next = 0  # this many subscribe calls answer SubscriptionBusy first
        self.break_next = 0  # this many subscriptions break off after their first event
        self.events_per_subscription = 3  # then the subscription ends (AWS: 5 minutes)
        self.event_limit = 10  # records per subscription event
        self.idle_event_s = 0.005  # pause before an empty event (kinesis-local: about 1 s)
        self.subscriptions: list[tuple[str, StartAt]] = []
        for _ in range(shards):
            self._add_shard()
        self._now = clock_now or datetime(2025, 12, 29, tzinfo=UTC)

    def _add_shard(self, *parents: str) -> str:
        shard_id = f"shardId-{self._next_shard:012d}"
        self._next_shard += 1
        parent = parents[0] if parents else None
        adjacent = parents[1] if len(parents) > 1 else None
        self._shards[shard_id] = _MemShard(Shard(shard_id, parent, adjacent))
        return shard_id

    def open_shards(self) -> list[str]:
        return [s for s, m in self._shards.items() if not m.closed]

    def put(self, data: bytes, partition_key: str, shard_id: str | None = None) -> StreamRecord:
        with self._lock:
            open_shards = self.open_shards()
            digest = int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")
            target = shard_id or open_shards[digest % len(open_shards)]
            shard = self._shards[target]
            if shard.closed:
                raise KitError(f"{target} is closed")
            self._next_sequence += 1
            record = StreamRecord(
                self.name, target, str(self._next_sequence), partition_key, self._now, data
            )
            shard.records.append(record)
            return record

    def split(self, shard_id: str) -> tuple[str, str]:
        with self._lock:
            self._close(shard_id)
            children = (self._add_shard(shard_id), self._add_shard(shard_id))
            self._shards[shard_id].children = children
            return children

    def merge(self, shard_id: str, adjacent: str) -> str:
        with self._lock:
            self._close(shard_id)
            self._close(adjacent)
            child = self._add_shard(shard_id, adjacent)
            self._shards[shard_id].children = (child,)
            self._shards[adjacent].children = (child,)
            return child

    def _close(self, shard_id: str) -> None:
        mem = self._shards[shard_id]
        mem.closed = True
        last = mem.records[-1].sequence_number if mem.records else str(self._next_sequence)
        mem.shard = Shard(
            shard_id, mem.shard.parent_shard_id, mem.shard.adjacent_parent_shard_id, last
        )

    # -- StreamPort ----------------------------------------------------------------------------
    def list_shards(self, stream: str) -> list[Shard]:
        with self._lock:
            return [m.shard for m in self._shards.values()]

    def iterator(self, stream: str, shard_id: str, start: StartAt) -> str:
        with self._lock:
            if shard_id not in self._shards:
                raise ResourceMissing(f"no shard {shard_id} in {stream}", service="kinesis")
            records = self._shards[shard_id].records
            if start.kind is StartKind.TRIM_HORIZON:
                index = 0
            elif start.kind is StartKind.LATEST:
                index = len(records)
            elif start.kind is StartKind.AT_TIMESTAMP:
                assert start.timestamp is not None
                index = next(
                    (i for i, r in enumerate(records) if r.arrival_time >= start.timestamp),
                    len(records),
                )
            else:
                assert start.sequence_number is not None
                after = sequence_key(start.sequence_number)
                index = next(
                    (i for i, r in enumerate(records) if sequence_key(r.sequence_number) > after),
                    len(records),
                )
            token = f"it-{len(self._iterators)}"
            self._iterators[token] = (shard_id, index)
            return token

    def get_records(self, stream: str, shard_id: str, iterator: str, limit: int) -> Page:
        with self._lock:
            self.calls.append(shard_id)
            if self.throttle_next > 0:
                self.throttle_next -= 1
                raise Throttled("Rate exceeded for shard", service="kinesis", code="throttled")
            if iterator in self.expired:
                raise IteratorExpired("Iterator expired", service="kinesis")
            shard_id, index = self._iterators[iterator]
            mem = self._shards[shard_id]
            page = mem.records[index : index + limit]
            end = index + len(page)
            if mem.closed and end >= len(mem.records):
                return Page(list(page), None, 0, mem.children)
            token = f"it-{len(self._iterators)}"
            self._iterators[token] = (shard_id, end)
            behind = 0 if end >= len(mem.records) else 1000
            return Page(list(page), token, behind)

    def consumer(self, stream: str, name: str) -> StreamConsumer | None:
        with self._lock:
            found = self.consumers.get(name)
            if found is not None and found.status is ConsumerStatus.CREATING:
                self.activation_polls -= 1
                if self.activation_polls < 0:
                    found = StreamConsumer(name, found.arn, ConsumerStatus.ACTIVE)
                    self.consumers[name] = found
            return found

    def register_consumer(self, stream: str, name: str) -> StreamConsumer:
        with self._lock:
            if name not in self.consumers:
                arn = f"arn:aws:kinesis:us-east-1:000000000000:stream/{stream}/consumer/{name}:1"
                self.consumers[name] = StreamConsumer(name, arn, ConsumerStatus.CREATING)
            return self.consumers[name]

    def subscribe(
        self, stream: str, consumer_arn: str, shard_id: str, start: StartAt
    ) -> _MemorySubscription:
        with self._lock:
            if not any(c.arn == consumer_arn for c in self.consumers.values()):
                raise ResourceMissing(f"no consumer {consumer_arn}", service="kinesis")
            if self.busy_next > 0:
                self.busy_next -= 1
                raise SubscriptionBusy("Another active subscription exists", service="kinesis")
            self.subscriptions.append((shard_id, start))
            breaks = self.break_next > 0
            if breaks:
                self.break_next -= 1
        index = self._iterators[self.iterator(stream, shard_id, start)][1]
        return _MemorySubscription(self, self._shards[shard_id], index, breaks=breaks)

    def expire(self, iterators: Sequence[str] | None = None) -> None:
        """Make iterators handed out so far expire (all of them by default)."""
        with self._lock:
            self.expired.update(iterators if iterators is not None else self._iterators)


class _MemorySubscription:
    """``MemoryStream.subscribe``: events of up to ``event_limit`` records from a position, an
    empty event when caught up, ``ChildShards`` at a closed shard's end; it ends after
    ``events_per_subscription`` events (or breaks off after its first, when told to)."""

    def __init__(
        self, stream: MemoryStream, shard: _MemShard, index: int, *, breaks: bool = False
    ) -> None:
        self._stream = stream
        self._shard = shard
        self._index = index
        self._breaks = breaks
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()

    def __iter__(self) -> Iterator[Page]:
        for n in range(self._stream.events_per_subscription):
            if self._closed.is_set() or (self._breaks and n == 1):
                raise SubscriptionBroken("the event stream broke off", service="kinesis")
            with self._stream._lock:
                records = self._shard.records
                page = records[self._index : self._index + self._stream.event_limit]
                self._index += len(page)
                caught_up = self._index >= len(records)
                ended = self._shard.closed and caught_up
                last = records[self._index - 1].sequence_number if self._index else "0"
            if ended:
                yield Page(list(page), None, 0, self._shard.children)
                return
            if not page:
                self._closed.wait(self._stream.idle_event_s)
            yield Page(list(page), last, 0 if caught_up else 1000)
