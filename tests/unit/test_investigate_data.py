"""A scripted incident with known answers, for the investigation commands' tests.

Source ``orders``, event types ``created`` (4 an hour) and ``paid`` (2 an hour), ingested at
the end of each hour of 2025-12-27 and 2025-12-28 (UTC), with:

* a missing hour: no ``created`` events with event time in 2025-12-28T05;
* late data: three ``created`` events of 2025-12-27T10 arrive at 2025-12-28T20:59 (~35 h late);
* a duplicate storm: one event resent 40 times over Kinesis at 2025-12-28T14;
* background duplicates: one resend in each of four hours;
* rejections at 2025-12-28T08: 3 ``invalid_time`` (created), 2 ``missing_field`` (paid),
  1 ``invalid_json`` with no source at all (indexed under ``_unknown``).

The seed runs through the real ingest sink, so the tiers share one truth: the unit tests on
in-memory adapters and the integration tests on the embedded AWS get the same answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from consumers.ingest import IngestSink, Submission
from infra.archive import MemoryRawArchive
from infra.clock import FixedClock
from infra.index import MemoryEventIndex
from infra.metrics import Metrics
from schemas.codec import Provenance
from schemas.envelope import Status, parse_body

T0 = datetime(2025, 12, 27, tzinfo=UTC)
SINCE, UNTIL = "2025-12-27T00:00:00Z", "2025-12-29T00:00:00Z"
HOURS = 48
SOURCE = "orders"
MISSING_HOUR = T0 + timedelta(hours=29)  # 2025-12-28T05
REJECT_HOUR = T0 + timedelta(hours=32)  # 2025-12-28T08
STORM_HOUR = T0 + timedelta(hours=38)  # 2025-12-28T14
LATE_HOUR = T0 + timedelta(hours=44)  # 2025-12-28T20: when the late events arrive
LATE_EVENT_HOUR = T0 + timedelta(hours=10)  # 2025-12-27T10: their event time
STORM_COPIES = 40
BACKGROUND_DUPLICATE_HOURS = (3, 15, 27, 39)
CREATED_OFFSETS = (timedelta(seconds=10), timedelta(minutes=15), timedelta(minutes=30),
                   timedelta(minutes=45))  # fmt: skip
PAID_OFFSETS = (timedelta(minutes=5), timedelta(minutes=35))
INGEST_AT = timedelta(minutes=59)  # each hour's events are sent at its 59th minute
END_CLOCK = T0 + timedelta(hours=HOURS, minutes=30)

ACCEPTED = 47 * 4 + 3 + 1 + 48 * 2  # created (one hour missing) + late + storm event + paid
DUPLICATES = STORM_COPIES + len(BACKGROUND_DUPLICATE_HOURS)
REJECTED_ORDERS = 5  # plus one with no source
LATE_LAG_MS = int(
    (LATE_HOUR + INGEST_AT - (LATE_EVENT_HOUR + timedelta(minutes=5))) / timedelta(milliseconds=1)
)


@dataclass
class Incident:
    storm_event_id: str = ""
    late_event_ids: list[str] = field(default_factory=list)
    background_duplicate_ids: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)


def _body(event_type: str, entity: str, at: datetime, n: int, **extra: object) -> bytes:
    event = {
        "source": SOURCE,
        "event_type": event_type,
        "entity_id": entity,
        "event_time": at.isoformat().replace("+00:00", "Z"),
        "payload": {"n": n},
        **extra,
    }
    return json.dumps(event).encode()


def _http(raw: bytes, request_id: str) -> Submission:
    prov = Provenance(occurrence_id=f"http:{request_id}:0", origin="http", request_id=request_id)
    return Submission(raw, prov, parse_body(raw), "0")


def _kinesis(raw: bytes, sequence: int, arrival: datetime) -> Submission:
    prov = Provenance(
        occurrence_id=f"kinesis:orders:shardId-000000000001:{sequence}:0",
        origin="kinesis",
        stream="orders",
        shard_id="shardId-000000000001",
        sequence_number=str(sequence),
        sub_sequence_number=0,
        partition_key="cust-storm",
        arrival_time=arrival,
    )
    return Submission(raw, prov, parse_body(raw), f"{sequence}.0")


def _move(clock: FixedClock, to: datetime) -> None:
    clock.advance(seconds=(to - clock.now()).total_seconds())


def seed_incident(sink: IngestSink, clock: FixedClock) -> Incident:
    """Ingest the incident through ``sink``; ``clock`` must stand at or before ``T0``."""
    incident = Incident()
    n = 0

    def send(subs: list[Submission], label: str) -> list[str]:
        results = sink.ingest(subs, label=label)
        incident.statuses.extend(r.status.value for r in results)
        return [r.event_id for r in results]

    for h in range(HOURS):
        start = T0 + timedelta(hours=h)
        _move(clock, start + INGEST_AT)
        batch: list[Submission] = []
        for i, offset in enumerate(CREATED_OFFSETS):
            if start != MISSING_HOUR:
                n += 1
                body = _body("created", f"cust-{(h + i) % 10}", start + offset, n)
                batch.append(_http(body, f"h{h}-c{i}"))
        for i, offset in enumerate(PAID_OFFSETS):
            n += 1
            batch.append(
                _http(_body("paid", f"cust-{(h + i) % 10}", start + offset, n), f"h{h}-p{i}")
            )
        send(batch, f"hour-{h}")
        if h in BACKGROUND_DUPLICATE_HOURS:
            [dup] = send([_http(batch[0].raw, f"h{h}-retry")], f"retry-{h}")
            incident.background_duplicate_ids.append(dup)
        if start == REJECT_HOUR:
            bad = [
                _body("created", "cust-7", start, 900 + i).replace(b"T08:00:00Z", b" 08:00")
                for i in range(3)
            ]
            missing = [
                json.dumps({"source": SOURCE, "event_type": "paid", "entity_id": "cust-8",
                            "payload": {"n": 950 + i}}).encode()
                for i in range(2)
            ]  # fmt: skip
            subs = [_http(raw, f"bad-{i}") for i, raw in enumerate([*bad, *missing])]
            subs.append(_http(b'{"source": "orders", "event_type"', "bad-json"))
            send(subs, "rejections")
        if start == STORM_HOUR:
            body = _body("created", "cust-storm", start + timedelta(minutes=20), 0,
                         idempotency_key="order-storm")  # fmt: skip
            [incident.storm_event_id] = send([_kinesis(body, 1000, clock.now())], "storm-first")
            for wave in range(STORM_COPIES // 10):
                copies = [_kinesis(body, 1001 + wave * 10 + i, clock.now()) for i in range(10)]
                send(copies, f"storm-{wave}")
        if start == LATE_HOUR:
            late = [
                _http(_body("created", f"cust-late-{i}", LATE_EVENT_HOUR + timedelta(minutes=5 + i), 700 + i),
                      f"late-{i}")
                for i in range(3)
            ]  # fmt: skip
            incident.late_event_ids = send(late, "late")
    _move(clock, END_CLOCK)
    return incident


@dataclass
class MemoryIncident:
    index: MemoryEventIndex
    archive: MemoryRawArchive
    clock: FixedClock
    incident: Incident


def memory_incident() -> MemoryIncident:
    index, archive, clock = MemoryEventIndex(), MemoryRawArchive(), FixedClock(T0)
    incident = seed_incident(IngestSink(archive, index, clock, Metrics()), clock)
    return MemoryIncident(index, archive, clock, incident)


def test_the_seed_produces_the_statuses_it_promises() -> None:
    seeded = memory_incident().incident
    assert seeded.statuses.count(Status.ACCEPTED) == ACCEPTED
    assert seeded.statuses.count(Status.DUPLICATE) == DUPLICATES
    assert seeded.statuses.count(Status.REJECTED) == REJECTED_ORDERS + 1
    assert len(seeded.late_event_ids) == 3
