"""What a tap run did, per shard and in all: the ``pik tap`` summary and ``--json`` document."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from consumers.ingest import IngestResult
from schemas.envelope import Status

COUNTS = ("records", "user_records", "accepted", "duplicates", "rejected", "redeliveries")


@dataclass
class ShardSummary:
    shard_id: str
    records: int = 0  # Kinesis records read (an aggregate counts once)
    user_records: int = 0  # records as their producers put them (after de-aggregation)
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    redeliveries: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    millis_behind_latest: int | None = None
    checkpoint: str | None = None
    finished: bool = False  # closed and read to its end
    get_records_calls: int = 0
    subscriptions: int = 0  # enhanced fan-out: SubscribeToShard event streams opened
    subscription_retries: int = 0  # busy (another subscription open) or broken off
    throttled: int = 0
    expired_iterators: int = 0
    ingest_retries: int = 0
    registry_waits: int = 0  # waits for a schema registry that could not answer
    outcome: str = ""

    def add(self, records: int, results: Iterable[IngestResult]) -> None:
        self.records += records
        for result in results:
            self.user_records += 1
            if result.redelivery:
                self.redeliveries += 1
            elif result.status is Status.ACCEPTED:
                self.accepted += 1
            elif result.status is Status.DUPLICATE:
                self.duplicates += 1
            else:
                self.rejected += 1
                self.reasons[result.reason or "unknown"] += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "shard_id": self.shard_id,
            **{name: getattr(self, name) for name in COUNTS},
            "reasons": dict(self.reasons.most_common()),
            "millis_behind_latest": self.millis_behind_latest,
            "checkpoint": self.checkpoint,
            "finished": self.finished,
            "get_records_calls": self.get_records_calls,
            "subscriptions": self.subscriptions,
            "subscription_retries": self.subscription_retries,
            "throttled": self.throttled,
            "expired_iterators": self.expired_iterators,
            "ingest_retries": self.ingest_retries,
            "registry_waits": self.registry_waits,
            "outcome": self.outcome,
        }


@dataclass
class TapSummary:
    stream: str
    worker_id: str
    dry_run: bool = False
    efo_consumer: str | None = None  # the stream consumer's ARN when reading with fan-out
    shards: dict[str, ShardSummary] = field(default_factory=dict)
    held_elsewhere: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def shard(self, shard_id: str) -> ShardSummary:
        with self._lock:
            if shard_id not in self.shards:
                self.shards[shard_id] = ShardSummary(shard_id)
            return self.shards[shard_id]

    def totals(self) -> dict[str, Any]:
        with self._lock:
            shards = list(self.shards.values())
        out: dict[str, Any] = {name: sum(getattr(s, name) for s in shards) for name in COUNTS}
        reasons: Counter[str] = Counter()
        for s in shards:
            reasons.update(s.reasons)
        out["reasons"] = dict(reasons.most_common())
        behind = [s.millis_behind_latest for s in shards if s.millis_behind_latest is not None]
        out["millis_behind_latest"] = max(behind) if behind else None
        return out

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            shards = [self.shards[k].to_json() for k in sorted(self.shards)]
        return {
            "stream": self.stream,
            "worker_id": self.worker_id,
            "dry_run": self.dry_run,
            "efo_consumer": self.efo_consumer,
            **self.totals(),
            "shards": shards,
            "held_elsewhere": sorted(self.held_elsewhere),
        }
