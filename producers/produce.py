"""The load and demo producer: realistic events in a foreign (non-envelope) shape on a stream.

It plays an existing "checkout" service that knows nothing of this kit. Its records look like::

    {"type": "order_placed", "event_id": "5f0c…", "order_id": "o-004711",
     "customer": {"id": "cust-0007", "tier": "gold"}, "ts": "2025-12-29T10:00:00.123Z",
     "amount": {"value": 42.5, "currency": "EUR"}, "items": 3}

and ``BINDING_TOML`` is the ``[[tap]]`` binding that reads them. With chosen shares it adds
**duplicates** (the same bytes put again, as a producer retry would), **late** events (event time
minutes to hours before now) and **bad** records (CSV lines, cut-off JSON, a missing customer, an
unreadable time). Records are put plain or **KPL-aggregated** (aws-kinesis-agg's aggregator,
50 KiB aggregates as the KPL makes by default), in PutRecords batches of at most 500 records and
5 MiB; entries that fail (throttling, internal errors) are retried with backoff.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from infra.clock import Clock
from infra.errors import KitError
from schemas.envelope import format_time
from schemas.kpl import aggregate

MAX_PUT_RECORDS = 500
MAX_PUT_BYTES = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024
KPL_AGGREGATE_BYTES = 50 * 1024  # the KPL's default AggregationMaxSize
MAX_PUT_ATTEMPTS = 10
RECENT_WINDOW = 1_000  # a duplicate repeats one of the last this many valid events

SOURCE = "checkout"
EVENT_TYPES = ("order_placed", "order_paid", "order_shipped", "cart_updated")
TIERS = ("basic", "silver", "gold")
CURRENCIES = ("EUR", "USD", "GBP")

BINDING_TOML = """[[tap]]
stream = "{stream}"
source = "checkout"
format = "json"
event_type = "$.type"
entity_id = "$.customer.id"
event_time = "$.ts"
idempotency_key = "$.event_id"
"""

OK, DUP, BAD = "ok", "duplicate", "bad"

Entry = tuple[str, bytes, str | None]  # partition key, data, explicit hash key


class RecordPutter(Protocol):
    def put_records(self, stream: str, entries: list[Entry]) -> list[str | None]:
        """One PutRecords call: per entry None (stored) or an error code (to retry)."""
        ...


@dataclass(frozen=True, slots=True)
class ProduceSpec:
    count: int = 1_000
    rate: float | None = None  # user records per second; None: as fast as the stream takes
    kpl: bool = False
    entities: int = 50
    duplicates: float = 0.0  # shares, 0..1
    late: float = 0.0
    bad: float = 0.0
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Produced:
    body: bytes
    partition_key: str
    kind: str  # ok | duplicate | bad
    late: bool = False
    event_id: str | None = None  # the producer's own id (the binding's idempotency key)


@dataclass
class ProduceReport:
    stream: str
    kpl: bool
    user_records: int = 0
    kinesis_records: int = 0
    put_calls: int = 0
    retried_entries: int = 0
    valid: int = 0
    duplicates: int = 0
    late: int = 0
    bad: int = 0
    seconds: float = 0.0
    expected: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _pick(rng: random.Random, share: float) -> bool:
    return share > 0 and rng.random() < share


def generate(spec: ProduceSpec, now: datetime) -> Iterator[Produced]:
    """``spec.count`` records in the checkout shape, deterministic for a given seed and ``now``."""
    rng = random.Random(spec.seed)
    recent: list[Produced] = []
    entities = [f"cust-{n:04d}" for n in range(max(1, spec.entities))]
    for n in range(spec.count):
        if recent and _pick(rng, spec.duplicates):
            again = rng.choice(recent)
            yield Produced(again.body, again.partition_key, DUP, again.late, again.event_id)
            continue
        customer = rng.choice(entities)
        late = _pick(rng, spec.late)
        offset = timedelta(seconds=rng.uniform(0, 2))
        if late:
            offset += timedelta(minutes=rng.uniform(10, 360))
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        doc: dict[str, Any] = {
            "type": rng.choice(EVENT_TYPES),
            "event_id": event_id,
            "order_id": f"o-{rng.randrange(1_000_000):06d}",
            "customer": {"id": customer, "tier": rng.choice(TIERS)},
            "ts": format_time(now - offset),
            "amount": {"value": round(rng.uniform(1, 500), 2), "currency": rng.choice(CURRENCIES)},
            "items": rng.randint(1, 9),
        }
        if _pick(rng, spec.bad):
            yield Produced(_spoil(rng, doc, n), customer, BAD, late)
            continue
        produced = Produced(json.dumps(doc).encode(), customer, OK, late, event_id)
        recent.append(produced)
        if len(recent) > RECENT_WINDOW:
            recent.pop(0)
        yield produced


def _spoil(rng: random.Random, doc: dict[str, Any], n: int) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:  # someone's CSV exporter pointed at the wrong stream
        return f"{doc['type']},{doc['customer']['id']},{doc['amount']['value']},{n}".encode()
    if kind == 1:  # cut off mid-record
        text = json.dumps(doc).encode()
        return text[: len(text) // 2]
    if kind == 2:  # a customer-less event
        return json.dumps({**doc, "customer": {"tier": "basic"}}).encode()
    return json.dumps({**doc, "ts": "29/12/2025 10:00"}).encode()  # not a time we can read


class Producer:
    def __init__(
        self,
        putter: RecordPutter,
        clock: Clock,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._putter = putter
        self._clock = clock
        self._sleep = sleep
        self._monotonic = monotonic

    def run(
        self,
        stream: str,
        spec: ProduceSpec,
        *,
        keep: list[Produced] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ProduceReport:
        """Put ``spec.count`` records; ``keep`` (a list) receives every record put, in order."""
        report = ProduceReport(stream, spec.kpl)
        started = self._monotonic()
        chunk = MAX_PUT_RECORDS if not spec.kpl else 5 * MAX_PUT_RECORDS
        pending: list[Produced] = []
        for produced in generate(spec, self._clock.now()):
            pending.append(produced)
            if len(pending) >= chunk:
                self._flush(stream, spec, pending, report, started, keep, progress)
                pending = []
        if pending:
            self._flush(stream, spec, pending, report, started, keep, progress)
        report.seconds = round(self._monotonic() - started, 3)
        report.expected = {
            "accepted": report.valid,
            "duplicate": report.duplicates,
            "rejected": report.bad,
        }
        return report

    def _flush(
        self,
        stream: str,
        spec: ProduceSpec,
        records: list[Produced],
        report: ProduceReport,
        started: float,
        keep: list[Produced] | None,
        progress: Callable[[int], None] | None,
    ) -> None:
        if spec.kpl:
            entries: list[Entry] = [
                (a.partition_key, a.data, a.explicit_hash_key)
                for a in aggregate(
                    [(r.partition_key, r.body) for r in records], max_bytes=KPL_AGGREGATE_BYTES
                )
            ]
        else:
            entries = [(r.partition_key, r.body, None) for r in records]
        for batch in _batches(entries):
            self._put(stream, batch, report)
        report.user_records += len(records)
        report.kinesis_records += len(entries)
        for r in records:
            report.valid += r.kind == OK
            report.duplicates += r.kind == DUP
            report.bad += r.kind == BAD
            report.late += r.late and r.kind == OK
        if keep is not None:
            keep.extend(records)
        if progress is not None:
            progress(len(records))
        if spec.rate:
            ahead = report.user_records / spec.rate - (self._monotonic() - started)
            if ahead > 0:
                self._sleep(ahead)

    def _put(self, stream: str, entries: list[Entry], report: ProduceReport) -> None:
        attempt = 0
        while entries:
            report.put_calls += 1
            errors = self._putter.put_records(stream, entries)
            failed = [entry for entry, error in zip(entries, errors, strict=True) if error]
            if not failed:
                return
            attempt += 1
            report.retried_entries += len(failed)
            if attempt >= MAX_PUT_ATTEMPTS:
                codes = sorted({e for e in errors if e})
                raise KitError(
                    f"PutRecords to {stream}: {len(failed)} records still failing after "
                    f"{attempt} attempts ({', '.join(codes)})"
                )
            self._sleep(random.uniform(0, min(5.0, 0.05 * 2**attempt)))
            entries = failed


def _batches(entries: list[Entry]) -> Iterator[list[Entry]]:
    batch: list[Entry] = []
    size = 0
    for entry in entries:
        entry_size = len(entry[0].encode()) + len(entry[1])
        if entry_size > MAX_RECORD_BYTES:
            raise KitError(f"a record of {entry_size} bytes exceeds Kinesis's 1 MiB limit")
        if batch and (len(batch) >= MAX_PUT_RECORDS or size + entry_size > MAX_PUT_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry_size
    if batch:
        yield batch
