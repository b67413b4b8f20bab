"""Rollups on the embedded AWS: counted in the transactions that write what they count, so they
equal a recount of the index whatever was retried, re-run or raced (``infra.rollups``)."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

from consumers.ingest import Submission
from infra.archive import ArchiveReader
from infra.index import (
    IDENTITY_ITEM,
    LATE_SEEDS_PER_BATCH,
    OCCURRENCE_PREFIX,
    DynamoEventIndex,
    plain,
)
from infra.index_layout import restore
from infra.index_queries import DynamoIndexQueries
from infra.rollups import (
    LATE_PREFIX,
    ROLLUP_PREFIX,
    Rollup,
    lag_bucket,
    late_entries,
    merge_rollups,
    recount,
)
from pik.kit import Kit
from schemas.codec import Provenance
from schemas.envelope import Status, format_time, parse_body
from tests.integration.test_index_layout import _claim


def _body(n: int, event_time: datetime, *, source: str = "shop") -> bytes:
    return json.dumps(
        {
            "source": source,
            "event_type": "order",
            "entity_id": f"c{n % 5}",
            "event_time": event_time.isoformat().replace("+00:00", "Z"),
            "payload": {"n": n},
        }
    ).encode()


def _sub(raw: bytes, occurrence: str, position: int) -> Submission:
    prov = Provenance(occurrence_id=occurrence, origin="http", request_id=occurrence)
    return Submission(raw, prov, parse_body(raw), str(position))


def _items(kit: Kit) -> list[dict[str, Any]]:
    ddb, de = kit.clients.dynamodb(), TypeDeserializer()
    pages = ddb.get_paginator("scan").paginate(TableName=kit.names.events_table)
    return [  # as the kit's readers see them (infra.index_layout.restore)
        restore({k: de.deserialize(v) for k, v in raw.items()})
        for page in pages
        for raw in page["Items"]
    ]


def _late(kit: Kit) -> list[dict[str, Any]]:
    """The latest-arrivals entries the table holds (a batch writes one bundle of them a key)."""
    return [
        entry
        for item in _items(kit)
        if str(item["event_id"]).startswith(LATE_PREFIX)
        for entry in late_entries(item)
    ]


def _stored(kit: Kit) -> dict[tuple[str, str, str], Counter[str]]:
    items = [plain(i) for i in _items(kit) if str(i["event_id"]).startswith(ROLLUP_PREFIX)]
    rollups = merge_rollups(Rollup.from_item(i) for i in items)
    return {(r.source, r.event_type, r.hour): +r.counts for r in rollups}


def _recounted(kit: Kit) -> dict[tuple[str, str, str], Counter[str]]:
    delivered = [
        i
        for i in _items(kit)
        if i["item"] == IDENTITY_ITEM or str(i["item"]).startswith(OCCURRENCE_PREFIX)
    ]
    return {(r.source, r.event_type, r.hour): +r.counts for r in recount(delivered)}


def _totals(stored: dict[tuple[str, str, str], Counter[str]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for counts in stored.values():
        total.update(counts)
    return total


def test_rollups_count_what_the_sink_indexed_and_a_rerun_adds_nothing(kit: Kit) -> None:
    now = kit.clock.now()
    times = [now - timedelta(minutes=7 * n) for n in range(20)] + [now - timedelta(days=2)]
    batch = [_sub(_body(n, t), f"http:first:{n}", n) for n, t in enumerate(times)]
    batch += [_sub(_body(n, times[n]), f"http:retry:{n}", 100 + n) for n in range(4)]
    batch += [_sub(b"{not json", f"http:bad:{n}", 200 + n) for n in range(3)]
    results = kit.sink.ingest(batch, label="rollups", at=now)
    statuses = Counter(r.status for r in results)
    assert statuses == {Status.ACCEPTED: 21, Status.DUPLICATE: 4, Status.REJECTED: 3}
    stored = _stored(kit)
    assert stored == _recounted(kit)
    totals = _totals(stored)
    assert (totals["acc"], totals["ev"], totals["dup"], totals["rej"]) == (21, 21, 4, 3)
    assert totals["rz_invalid_json"] == 3
    # the late event counts by ingest hour (acc) and, two days earlier, by event hour (ev)
    late_hour = format_time(times[-1])[:13]
    assert stored[("shop", "order", late_hour)] == Counter(
        {"ev": 1, f"lg_{lag_bucket(2 * 86_400_000)}": 1}
    )

    again = kit.sink.ingest(batch, label="rollups", at=now)  # the same deliveries: redeliveries
    assert all(r.redelivery for r in again if r.status is not Status.REJECTED)
    assert _stored(kit) == stored
    kit.index.record_occurrences([])  # nothing to write is no request and no change
    more = [_sub(_body(n, times[n]), f"http:third:{n}", n) for n in range(2)]
    kit.sink.ingest(more, label="more", at=now)
    assert _totals(_stored(kit))["dup"] == 6 and _stored(kit) == _recounted(kit)


def test_writers_racing_for_the_same_identities_count_each_once(kit: Kit) -> None:
    writers = [
        DynamoEventIndex(kit.clients.dynamodb(), kit.settings.events_table) for _ in range(4)
    ]
    barrier = threading.Barrier(len(writers))
    ids = [f"{n:064x}" for n in range(40)]

    def claim(n: int) -> None:
        barrier.wait()
        writers[n].claim([_claim(e, f"occ-{n}-{e[-4:]}") for e in ids])

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(len(writers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = _stored(kit)
    assert _totals(stored)["acc"] == len(ids) and stored == _recounted(kit)


def test_a_batch_over_many_hours_keeps_every_transaction_within_100_items(kit: Kit) -> None:
    sizes: list[int] = []
    ddb = kit.clients.dynamodb()
    ddb.meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems",
        lambda params, **_: sizes.append(len(params["TransactItems"])),
    )
    now = kit.clock.now()
    batch = [_sub(_body(n, now - timedelta(hours=n)), f"http:h:{n}", n) for n in range(150)]
    results = kit.sink.ingest(batch, label="hours", at=now)
    assert Counter(r.status for r in results) == {Status.ACCEPTED: 150}
    assert sizes and max(sizes) <= 100
    stored = _stored(kit)
    assert _totals(stored)["ev"] == 150 and stored == _recounted(kit)


def test_the_latest_arrivals_are_exact_and_few(kit: Kit) -> None:
    now = kit.clock.now()
    lags = [m * 10**e for e in range(1, 5) for m in range(10, 100)]  # 360, all apart
    random.Random(7).shuffle(lags)
    subs = [
        _sub(_body(n, now - timedelta(milliseconds=lag)), f"http:late:{n}", n)
        for n, lag in enumerate(lags)
    ]
    for start in range(0, len(subs), 60):
        kit.sink.ingest(subs[start : start + 60], label=f"late-{start}", at=now)
    entries = _late(kit)
    assert len(entries) < len(lags) / 2  # a few entries more than the top, not one per event
    bundles = [i for i in _items(kit) if str(i["event_id"]).startswith(LATE_PREFIX)]
    assert len(bundles) <= -(-len(subs) // 60)  # one item per batch and key
    queries = DynamoIndexQueries(kit.clients.dynamodb(), kit.names.events_table)
    day = format_time(now)[:10]
    top = [
        i for page in queries.latest("shop", "order", day, day, day + "~", limit=10)
        for i in page.items
    ]  # fmt: skip
    assert [int(i["lag_ms"]) for i in top] == sorted(lags, reverse=True)[:10]
    assert {"entity_id", "event_time", "ingest_time", "first_occurrence"} <= set(top[0])


def test_a_new_writer_starts_from_the_stored_latest_arrivals(kit: Kit) -> None:
    """A restarted tap or a Lambda cold start reads the day's list (one Query) instead of
    writing an entry for each of its own first 50 claims."""

    def claims(first: int, lags: list[int]) -> list[Any]:
        return [
            replace(_claim(f"{n:064x}", f"http:w:{n}"), lag_ms=lag)
            for n, lag in enumerate(lags, first)
        ]

    def entries() -> int:
        return len(_late(kit))

    table = kit.settings.events_table
    DynamoEventIndex(kit.clients.dynamodb(), table).claim(
        claims(0, [1_000 * (n + 10) for n in range(60)])
    )
    assert entries() == 60  # one writer's first claims are all among its 50 largest
    queries: list[str] = []
    ddb = kit.clients.dynamodb()
    ddb.meta.events.register(
        "provide-client-params.dynamodb.Query",
        lambda params, **_: queries.append(str(params["ExpressionAttributeValues"])),
    )
    restarted = DynamoEventIndex(ddb, table)
    restarted.claim(claims(100, [100 * (n + 10) for n in range(60)]))  # all below the stored top
    assert entries() == 60 and len(queries) == 1 and "late#s#t#2025-12-29" in queries[0]
    restarted.claim(claims(200, [99_000]))  # above it: listed, and no second Query
    assert entries() == 61 and len(queries) == 1
    got = DynamoIndexQueries(ddb, table).latest("s", "t", "2025-12-29", "", "~", limit=1)
    assert [int(i["lag_ms"]) for page in got for i in page.items] == [99_000]


def test_a_batch_over_many_event_days_reads_only_a_few_lists(kit: Kit) -> None:
    base = _claim("0" * 64, "x")
    claims = [
        replace(
            _claim(f"{n:064x}", f"http:d:{n}"),
            event_time=base.event_time - timedelta(days=n),
            lag_ms=n * 86_400_000,
        )
        for n in range(3 * LATE_SEEDS_PER_BATCH)
    ]
    queries: list[int] = []
    ddb = kit.clients.dynamodb()
    ddb.meta.events.register("provide-client-params.dynamodb.Query", lambda **_: queries.append(1))
    DynamoEventIndex(ddb, kit.settings.events_table).claim(claims)
    assert len(queries) == LATE_SEEDS_PER_BATCH
    assert len(_late(kit)) == len(claims)  # every day's list got its first entry all the same


def test_a_batch_run_again_after_a_stop_between_archive_and_index_counts_as_archived(
    kit: Kit,
) -> None:
    """The first run wrote the archive file and stopped before the claims (a SIGKILL); the
    second run, hours later, finds the file there: the index and the rollups take the ingest
    time and lag the file holds, so they agree with a recount of the archive."""
    now = kit.clock.now()
    batch = [_sub(_body(n, now - timedelta(seconds=n)), f"kinesis:s:0:{n}:0", n) for n in range(20)]
    real_claim = kit.index.claim

    def stopped(claims: Any, occurrences: Any = ()) -> Any:
        raise SystemExit("killed")

    kit.index.claim = stopped  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        kit.sink.ingest(batch, label="shard-0", at=now)
    kit.index.claim = real_claim  # type: ignore[method-assign]
    kit.clock.advance(hours=3)  # type: ignore[attr-defined]
    results = kit.sink.ingest(batch, label="shard-0", at=now)
    assert Counter(r.status for r in results) == {Status.ACCEPTED: 20}
    records = {
        r.event_id: r
        for key in {r.archive.key for r in results if r.archive is not None}
        for r in ArchiveReader(kit.archive).records(key)
    }
    for item in _items(kit):
        if item["item"] == IDENTITY_ITEM:
            record = records[str(item["event_id"])]
            assert item["ingest_time"] == format_time(record.ingest_time)
            assert int(item["lag_ms"]) == record.lag_ms
    stored = _stored(kit)
    assert {hour for (_, _, hour), c in stored.items() if c["acc"]} == {format_time(now)[:13]}
    assert stored == _recounted(kit)
