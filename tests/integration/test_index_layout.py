"""The events table's layout on the embedded AWS, priced and throttled by the capacity model.

The strict capacity model raises ``ProvisionedThroughputExceededException`` as AWS would when a
partition key takes more than 1,000 WCU in one second, so these tests see the back-pressure a
hot key would cause on AWS: one source and one event type (and one constant entity) writing
1,500 events in the same second must fit, which a key holding a whole day of a source cannot.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

from consumers.ingest import Submission
from infra.archive import ArchivePointer
from infra.bundles import BUNDLE_PREFIX
from infra.capacity import CapacityModel, TableSpec
from infra.index import Claim, DynamoEventIndex, Selection
from infra.index_layout import INDEX_BY_ENTITY, WIDE_ENTITY, WIDE_SHARDS, WIDE_TIME, shard_of
from infra.index_queries import DynamoIndexQueries
from pik.investigate.service import CountingQueries
from pik.kit import Kit
from schemas.codec import Provenance
from schemas.envelope import Status, format_time, parse_body

HOT_EVENTS = 1_500  # in one second: 1.5x one partition key's write limit


def _model(kit: Kit) -> CapacityModel:
    dynamodb = kit.clients.dynamodb()
    spec = TableSpec.from_description(
        dynamodb.describe_table(TableName=kit.settings.events_table)["Table"]
    )
    model = CapacityModel([spec], clock=lambda: 0.0, strict=True)  # one second, all of it
    model.install(dynamodb)
    return model


def _hot_batch(start: datetime) -> list[Submission]:
    subs = []
    for i in range(HOT_EVENTS):
        raw = json.dumps(
            {
                "source": "checkout",
                "event_type": "order_placed",
                "entity_id": "-",  # entity-free: a constant
                "event_time": (start + timedelta(milliseconds=i))
                .isoformat()
                .replace("+00:00", "Z"),
                "payload": {"n": i},
            }
        ).encode()
        prov = Provenance(occurrence_id=f"hot:{i}", origin="http", request_id="hot")
        subs.append(Submission(raw, prov, parse_body(raw), str(i)))
    return subs


def test_one_source_type_and_entity_over_the_key_limit_is_not_throttled(kit: Kit) -> None:
    model = _model(kit)
    start = datetime(2025, 12, 29, 0, 55, tzinfo=UTC)
    results = kit.sink.ingest(_hot_batch(start), label="hot")
    assert Counter(r.status for r in results) == {Status.ACCEPTED: HOT_EVENTS}
    assert model.throttled == 0
    table = kit.settings.events_table
    peaks = {t: u for t, u in model.peak_wcu.items() if t.startswith(table)}
    assert max(peaks.values()) < 1000
    assert peaks[f"{table}:{INDEX_BY_ENTITY}"] > 0
    usage = model.report()[table]
    assert "PutItem" not in usage["requests"]
    # conditional puts, 100 items to a transaction (at least 90 claims beside their rollup
    # updates and time bundles): 17 requests for 1,500 claims, not 1,500
    assert usage["requests"]["TransactWriteItems"] <= -(-HOT_EVENTS // 90)
    # the time bundles went wide with the source and type: on the file's own shard (one
    # bundle per file and event hour, not a small one per shard)
    bundles = {k for k in model.write_units_by_key(table) if k.startswith(BUNDLE_PREFIX)}
    files = {(r.archive.bucket, r.archive.key) for r in results if r.archive is not None}
    shards = {shard_of(f"{b}\n{k}", WIDE_SHARDS) for b, k in files}
    assert {int(k.rsplit("#", 1)[1]) for k in bundles} == shards
    assert len(bundles) <= 2 * len(files)  # a file's events span at most two event hours
    marks = [(WIDE_TIME, "checkout", "order_placed"), (WIDE_TIME, "checkout", "other")]
    assert DynamoEventIndex(kit.clients.dynamodb(), table).wide_marks(marks) == {marks[0]}
    # every event is found again through the sharded keys, in event-time order
    sel = Selection(
        start, start + timedelta(minutes=1), source="checkout", event_type="order_placed"
    )
    times = [i["time_key"] for page in kit.index.select(sel) for i in page.items]
    assert len(times) == HOT_EVENTS and times == sorted(times)
    by_entity = Selection(start, start + timedelta(minutes=1), entity_id="-")
    assert sum(len(p.items) for p in kit.index.select(by_entity)) == HOT_EVENTS
    # a reader that never wrote finds the keys wide by their marks
    reader = DynamoEventIndex(kit.clients.dynamodb(), table)
    assert sum(len(p.items) for p in reader.select(by_entity)) == HOT_EVENTS
    assert reader.wide_marks([(WIDE_ENTITY, "-"), (WIDE_ENTITY, "other")]) == {(WIDE_ENTITY, "-")}


def test_a_quiet_key_stays_on_one_shard_and_is_read_with_one_query(kit: Kit) -> None:
    start = datetime(2025, 12, 29, 0, 55, tzinfo=UTC)
    subs = _hot_batch(start)[:20]
    kit.sink.ingest(subs, label="quiet")
    table = kit.settings.events_table
    model = _model(kit)
    sel = Selection(
        start, start + timedelta(minutes=1), source="checkout", event_type="order_placed"
    )
    items = [i for page in kit.index.select(sel) for i in page.items]
    assert len(items) == 20
    # the wide marks (one BatchGetItem) and one Query; the index carries what replay reads
    assert model.report()[table]["requests"] == {"BatchGetItem": 1, "Query": 1}
    assert {"archive_key", "archive_position", "payload_bytes", "status"} <= set(items[0])


def _claim(event_id: str, occurrence: str) -> Claim:
    at = datetime(2025, 12, 29, tzinfo=UTC)
    return Claim(
        event_id=event_id,
        occurrence_id=occurrence,
        source="s",
        event_type="t",
        entity_id="e",
        event_time=at,
        ingest_time=at,
        lag_ms=0,
        provenance=Provenance(occurrence_id=occurrence, origin="http", request_id=occurrence),
        payload_bytes=10,
        pointer=ArchivePointer("b", f"raw/{occurrence}.avro", 0),
    )


def test_concurrent_writers_of_one_identity_cannot_both_win(kit: Kit) -> None:
    writers = [
        DynamoEventIndex(kit.clients.dynamodb(), kit.settings.events_table) for _ in range(8)
    ]
    event_id = "a" * 64
    outcomes: dict[int, dict[str, object]] = {}
    barrier = threading.Barrier(len(writers))

    def claim(n: int) -> None:
        barrier.wait()
        outcomes[n] = dict(writers[n].claim([_claim(event_id, f"occ-{n}")]))

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(len(writers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [n for n, lost in outcomes.items() if event_id not in lost]
    assert len(winners) == 1
    item = kit.index.get(event_id)
    assert item is not None and item["first_occurrence"] == f"occ-{winners[0]}"
    for n, lost in outcomes.items():  # every loser is told who holds it
        if n != winners[0]:
            assert lost[event_id].first_occurrence == f"occ-{winners[0]}"  # type: ignore[attr-defined]


def test_one_ingest_days_deliveries_take_a_bounded_number_of_queries(kit: Kit) -> None:
    """A producer with a broken clock: 90 event days (some in the future) arrive on one ingest
    day. Reading that day's deliveries must not cost a Query per event day. (Under 100 events,
    so that the keys stay narrow: one Query per key.)"""
    now = kit.clock.now()
    days = [now - timedelta(days=n) for n in range(-5, 85)]
    subs = []
    for i, when in enumerate(days):
        raw = json.dumps(
            {
                "source": "clocks",
                "event_type": "tick",
                "entity_id": f"e{i % 7}",
                "event_time": when.isoformat().replace("+00:00", "Z"),
                "payload": {"n": i},
            }
        ).encode()
        prov = Provenance(occurrence_id=f"http:clock:{i}", origin="http", request_id="clock")
        subs.append(Submission(raw, prov, parse_body(raw), str(i)))
    results = kit.sink.ingest(subs, label="clocks")
    assert Counter(r.status for r in results) == {Status.ACCEPTED: len(days)}
    day = format_time(now)[:10]
    queries = CountingQueries(DynamoIndexQueries(kit.clients.dynamodb(), kit.names.events_table))
    items = [
        i
        for page in queries.deliveries("clocks", day, day, day + "~", attributes=("event_id",))
        for i in page.items
    ]
    assert len(items) == len({i["event_id"] for i in items}) == len(days)
    # 4 by_ingest shards, the catalog, and the time bundles of the 3 near event days: not 200 Queries
    assert queries.queries <= 4 + 1 + 3
