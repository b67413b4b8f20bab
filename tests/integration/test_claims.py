"""Claims outside transactions (infra.claims) on the embedded AWS: counted exactly once when a
writer stops between its claims and their counts, and when a sweep races the live writer."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers.ingest import IngestSink, Submission
from infra.bundles import BUNDLE_PREFIX
from infra.claims import COUNTED_PREFIX, PENDING_PREFIX, ClaimLog, file_token
from infra.errors import BackendError
from infra.index import DynamoEventIndex, Selection
from infra.index_queries import DynamoIndexQueries
from infra.rollups import Rollup, merge_rollups
from pik.kit import Kit, _recover
from schemas.codec import Provenance
from schemas.envelope import Rejection, Status, parse_body
from schemas.identity import event_id

EVENTS = 30
AT = datetime(2025, 12, 29, 3, 0, tzinfo=UTC)


class Stopped(Exception):
    """The writer was killed here."""


def _killed(self: ClaimLog, *args: Any) -> int:
    """``ClaimLog.settle`` of a writer killed after its claims."""
    raise Stopped


def _stopped_before_counting(
    kit: Kit, monkeypatch: pytest.MonkeyPatch, subs: list[Submission], label: str
) -> None:
    """Ingest ``subs`` with the writer killed at its first settle (after its inserts)."""
    with monkeypatch.context() as patch:
        patch.setattr(ClaimLog, "settle", _killed)
        with pytest.raises(Stopped):
            kit.sink.ingest(subs, label=label, at=AT)


def _batch(start: datetime) -> list[Submission]:
    subs = []
    for i in range(EVENTS):
        raw = json.dumps(
            {
                "source": "orders",
                "event_type": "order_placed",
                "entity_id": f"user_{i % 4}",
                "event_time": (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
                "payload": {"n": i},
            }
        ).encode()
        prov = Provenance(occurrence_id=f"http:claims:{i}", origin="http", request_id="claims")
        subs.append(Submission(raw, prov, parse_body(raw), str(i)))
    return subs


def _accepted(kit: Kit, name: str = "acc") -> int:
    queries = DynamoIndexQueries(kit.clients.dynamodb(), kit.names.events_table)
    day = kit.clock.now().date().isoformat()
    items = [i for page in queries.rollups("orders", day) for i in page.items]
    return sum(r.count(name) for r in merge_rollups(Rollup.from_item(i) for i in items))


def _mixed(start: datetime) -> list[Submission]:
    """The batch, then resends of its first five events and three bad records."""
    subs = _batch(start)
    for i in range(5):
        prov = Provenance(occurrence_id=f"http:resend:{i}", origin="http", request_id="resend")
        subs.append(Submission(subs[i].raw, prov, subs[i].parsed, f"r{i}"))
    for i in range(3):  # no entity_id, no event_time
        raw = json.dumps({"source": "orders", "event_type": "order_placed", "payload": {"i": i}})
        prov = Provenance(occurrence_id=f"http:bad:{i}", origin="http", request_id="bad")
        subs.append(Submission(raw.encode(), prov, parse_body(raw.encode()), f"b{i}"))
    return subs


def _bundled(kit: Kit, start: datetime) -> int:
    sel = Selection(start, start + timedelta(hours=1), source="orders", event_type="order_placed")
    return sum(len(page.items) for page in kit.index.select(sel))


def _kinds(kit: Kit) -> Counter[str]:
    ddb = kit.clients.dynamodb()
    out: Counter[str] = Counter()
    for page in ddb.get_paginator("scan").paginate(TableName=kit.names.events_table):
        for raw in page["Items"]:
            pk = raw["event_id"]["S"]
            for prefix in (PENDING_PREFIX, COUNTED_PREFIX, BUNDLE_PREFIX):
                out[prefix] += pk.startswith(prefix)
            out["event"] += raw["item"]["S"] == "event"
    return out


def _bundle_keys(kit: Kit) -> set[str]:
    ddb = kit.clients.dynamodb()
    return {
        raw["event_id"]["S"]
        for page in ddb.get_paginator("scan").paginate(TableName=kit.names.events_table)
        for raw in page["Items"]
        if raw["event_id"]["S"].startswith(BUNDLE_PREFIX)
    }


def _writer(kit: Kit) -> DynamoEventIndex:
    """Another writer process on the same table (a restarted tap, another Lambda)."""
    return DynamoEventIndex(
        kit.clients.dynamodb(), kit.names.events_table, recover=_recover(kit.archive)
    )


def test_a_writer_stopped_after_its_claims_is_finished_by_a_sweep(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = kit.clock.now() - timedelta(minutes=5)
    subs = _batch(start)

    _stopped_before_counting(kit, monkeypatch, subs, "claims")
    # the claims and their bundle are in, their counts are not, and a note says so
    assert _kinds(kit)["event"] == EVENTS
    assert _accepted(kit) == 0 and _bundled(kit, start) == EVENTS
    assert _kinds(kit)[PENDING_PREFIX] == 1 and _kinds(kit)[BUNDLE_PREFIX] == 1

    other = _writer(kit)
    assert other.sweep(older_than=3600) == 0  # a fresh note is its writer's
    assert other.sweep(older_than=0) == 1
    assert _accepted(kit) == EVENTS and _bundled(kit, start) == EVENTS  # the same bundle again
    assert _kinds(kit)[PENDING_PREFIX] == 0 and _kinds(kit)[BUNDLE_PREFIX] == 1
    assert other.sweep(older_than=0) == 0

    # the batch run again (the tap reading its shard from the checkpoint): nothing added
    results = kit.sink.ingest(subs, label="claims", at=AT)
    assert Counter(r.status for r in results) == {Status.ACCEPTED: EVENTS}
    assert _accepted(kit) == EVENTS and _bundled(kit, start) == EVENTS
    kinds = _kinds(kit)
    assert kinds[PENDING_PREFIX] == 0 and kinds[BUNDLE_PREFIX] == 1 and kinds[COUNTED_PREFIX] == 1


def test_duplicates_and_rejections_of_a_stopped_writer_are_counted_once_by_a_sweep(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Occurrences go with the claims of the same files: inserted (1x), then counted by the
    file's settle. The writer stops before that: a sweep counts the raw file's duplicates and
    the quarantine file's rejections, once, and a re-run of the batch adds nothing."""
    start = kit.clock.now() - timedelta(minutes=5)
    subs = _mixed(start)
    _stopped_before_counting(kit, monkeypatch, subs, "mixed")
    assert _kinds(kit)[PENDING_PREFIX] == 1  # one note: the raw file and the quarantine file
    assert (_accepted(kit), _accepted(kit, "dup"), _accepted(kit, "rej")) == (0, 0, 0)
    first = subs[0].parsed
    assert not isinstance(first, Rejection)
    held = kit.index.lookup([event_id(first)])[event_id(first)]
    assert held.dup_occurrences == {"http:resend:0"}  # added before the counts

    assert _writer(kit).sweep(older_than=0) == 2
    assert (_accepted(kit), _accepted(kit, "dup"), _accepted(kit, "rej")) == (EVENTS, 5, 3)
    assert _kinds(kit)[PENDING_PREFIX] == 0
    results = kit.sink.ingest(subs, label="mixed", at=AT)
    assert Counter(r.status for r in results) == {
        Status.ACCEPTED: EVENTS,
        Status.DUPLICATE: 5,
        Status.REJECTED: 3,
    }
    assert (_accepted(kit), _accepted(kit, "dup"), _accepted(kit, "rej")) == (EVENTS, 5, 3)
    assert len(kit.index.occurrences(event_id(first))) == 1


def test_a_claim_that_loses_is_recorded_as_a_duplicate_by_the_index(kit: Kit) -> None:
    """Two writers ingest the same events under other delivery ids (a producer retry reaching
    two processes at once): the second looked them up before the first claimed them, so its
    claims lose, and the index itself records them as duplicates of the first, counted with
    the second's file."""
    start = kit.clock.now() - timedelta(minutes=5)
    kit.sink.ingest(_batch(start), label="one", at=AT)
    again = [
        Submission(s.raw, Provenance(f"http:two:{n}", "http"), s.parsed, s.position)
        for n, s in enumerate(_batch(start))
    ]
    writer = _writer(kit)
    writer.lookup = lambda event_ids: {}  # type: ignore[method-assign]  # the race
    other = IngestSink(kit.archive, writer, kit.clock, kit.metrics)
    results = other.ingest(again, label="two", at=AT)
    assert Counter(r.status for r in results) == {Status.DUPLICATE: EVENTS}
    assert (_accepted(kit), _accepted(kit, "dup")) == (EVENTS, EVENTS)
    first = again[0].parsed
    assert not isinstance(first, Rejection)
    assert kit.index.lookup([event_id(first)])[event_id(first)].dup_occurrences == {"http:two:0"}
    assert [o["status"] for o in kit.index.occurrences(event_id(first))] == ["DUPLICATE"]


def test_a_sweep_racing_the_live_writer_counts_once(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = kit.clock.now() - timedelta(minutes=5)
    other = _writer(kit)
    settle = ClaimLog.settle
    swept: list[int] = []
    racing_now: list[bool] = []

    def racing(self: ClaimLog, *args: Any) -> int:
        if not racing_now:  # another writer sweeps while this one is between claims and counts
            racing_now.append(True)
            swept.append(other.sweep(older_than=0))
        return settle(self, *args)

    monkeypatch.setattr(ClaimLog, "settle", racing)
    results = kit.sink.ingest(_batch(start), label="race", at=AT)
    assert Counter(r.status for r in results) == {Status.ACCEPTED: EVENTS}
    assert swept == [1]
    assert _accepted(kit) == EVENTS and _bundled(kit, start) == EVENTS
    assert _kinds(kit)[PENDING_PREFIX] == 0


def test_claims_cost_one_write_each_outside_transactions(kit: Kit) -> None:
    ddb = kit.clients.dynamodb()
    calls: Counter[str] = Counter()
    ddb.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.update([model.name])
    )
    kit.sink.ingest(_batch(kit.clock.now() - timedelta(minutes=5)), label="cost", at=AT)
    # 30 claims: 2 BatchExecuteStatement of 25, one settling transaction, no PutItem
    assert calls["BatchExecuteStatement"] == 2
    assert calls["TransactWriteItems"] == 1
    assert calls["PutItem"] == 0


def test_a_batchs_files_settle_together_and_once(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four event types: four archive files, settled in one transaction. The writer stops
    before deleting its note: the sweep finds every mark there and adds nothing. Resends and bad
    records of one type add a quarantine file whose rollup item the raw file's updates too: it
    gets a transaction of its own (a transaction may not write one item twice)."""
    ddb = kit.clients.dynamodb()
    calls: Counter[str] = Counter()
    ddb.meta.events.register(
        "before-call.dynamodb.TransactWriteItems", lambda model, **_: calls.update(["tx"])
    )
    start = kit.clock.now() - timedelta(minutes=5)
    subs = []
    for n, s in enumerate(_batch(start)):
        raw = s.raw.replace(b'"order_placed"', f'"order_{n % 4}"'.encode())
        subs.append(Submission(raw, s.provenance, parse_body(raw), s.position))
    with monkeypatch.context() as patch:
        patch.setattr(ClaimLog, "done", _killed)
        with pytest.raises(Stopped):
            kit.sink.ingest(subs, label="four", at=AT)
    assert calls["tx"] == 1
    assert _accepted(kit) == EVENTS
    assert _writer(kit).sweep(older_than=0) == 4
    assert _accepted(kit) == EVENTS  # nothing added: every mark was there
    assert _kinds(kit)[PENDING_PREFIX] == 0
    calls.clear()
    kit.sink.ingest(_mixed(start + timedelta(hours=1)), label="mixed", at=AT)
    assert calls["tx"] == 2
    assert (_accepted(kit), _accepted(kit, "dup"), _accepted(kit, "rej")) == (2 * EVENTS, 5, 3)


def test_a_sweep_writes_a_wide_pairs_bundles_under_the_same_keys(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stopped writer had made the pairs wide; the sweeping writer has not seen them busy.
    The note says which pairs were spread, so the sweep rewrites the same bundles, and every
    event is selected once."""
    start = kit.clock.now() - timedelta(minutes=5)
    types = [f"order_{n}" for n in range(4)]  # four files, each bundled on its own shard
    subs = []
    for n in range(4 * 150):
        raw = json.dumps(
            {
                "source": "orders",
                "event_type": types[n % 4],
                "entity_id": f"user_{n % 4}",
                "event_time": (start + timedelta(milliseconds=n))
                .isoformat()
                .replace("+00:00", "Z"),
                "payload": {"n": n},
            }
        ).encode()
        subs.append(
            Submission(
                raw, Provenance(occurrence_id=f"wide:{n}", origin="http"), parse_body(raw), str(n)
            )
        )

    _stopped_before_counting(kit, monkeypatch, subs, "wide")
    before = _bundle_keys(kit)
    assert {key.rsplit("#", 1)[1] for key in before} - {"0"}  # spread over shards
    assert _writer(kit).sweep(older_than=0) == 4
    assert _bundle_keys(kit) == before
    assert _accepted(kit) == 600
    for name in types:
        sel = Selection(start, start + timedelta(hours=1), source="orders", event_type=name)
        ids = [i["event_id"] for page in _writer(kit).select(sel) for i in page.items]
        assert len(ids) == len(set(ids)) == 150


def test_one_sweep_finishes_a_bounded_number_of_files(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = kit.clock.now() - timedelta(minutes=5)

    for n in range(3):
        subs = [
            Submission(
                s.raw, Provenance(occurrence_id=f"b{n}:{i}", origin="http"), s.parsed, str(i)
            )
            for i, s in enumerate(_batch(start + timedelta(hours=n)))
        ]
        _stopped_before_counting(kit, monkeypatch, subs, f"backlog-{n}")
    other = _writer(kit)
    assert _kinds(kit)[PENDING_PREFIX] == 3
    assert other.sweep(older_than=0, limit=2) == 2 and _kinds(kit)[PENDING_PREFIX] == 1
    assert other.sweep(older_than=0, limit=2) == 1 and _kinds(kit)[PENDING_PREFIX] == 0


@pytest.mark.parametrize("refusal", ["statement", "request"])
def test_a_dynamodb_that_refuses_set_add_gets_update_item_instead(
    kit: Kit, monkeypatch: pytest.MonkeyPatch, refusal: str
) -> None:
    """Should DynamoDB refuse ``set_add`` (each statement, or the whole request), the duplicates'
    ids still reach their identities, by ``UpdateItem ADD``."""
    run = ClaimLog._run

    def refusing(self: ClaimLog, statements: Any, expected: set[str]) -> dict[int, str]:
        if not statements or not statements[0]["Statement"].startswith("UPDATE"):
            return run(self, statements, expected)
        if refusal == "request":
            raise BackendError("set_add refused", service="dynamodb", code="ValidationException")
        return dict.fromkeys(range(len(statements)), "ValidationError")

    monkeypatch.setattr(ClaimLog, "_run", refusing)
    subs = _mixed(kit.clock.now() - timedelta(minutes=5))
    results = kit.sink.ingest(subs, label="refused", at=AT)
    assert Counter(r.status for r in results)[Status.DUPLICATE] == 5
    for sub in subs[:5]:
        parsed = sub.parsed
        assert not isinstance(parsed, Rejection)
        held = kit.index.lookup([event_id(parsed)])[event_id(parsed)]
        assert len(held.dup_occurrences) == 1
    assert _accepted(kit, "dup") == 5


def test_a_note_of_the_previous_layout_is_swept_and_forgotten(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Notes used to name one file each (``bucket``, ``key``, ``spread``): a writer that stopped
    before the upgrade left one; the upgraded sweep finishes its file and deletes it."""
    start = kit.clock.now() - timedelta(minutes=5)
    _stopped_before_counting(kit, monkeypatch, _batch(start), "old-note")
    ddb, table = kit.clients.dynamodb(), kit.names.events_table
    (note,) = [
        raw
        for page in ddb.get_paginator("scan").paginate(TableName=table)
        for raw in page["Items"]
        if raw["event_id"]["S"].startswith(PENDING_PREFIX)
    ]
    ((bucket, key),) = ClaimLog(ddb, table).stale(0)[0].files
    ddb.delete_item(TableName=table, Key={"event_id": note["event_id"], "item": note["item"]})
    ddb.put_item(
        TableName=table,
        Item={
            "event_id": {"S": f"{PENDING_PREFIX}1"},
            "item": {"S": file_token((bucket, key))},
            "bucket": {"S": bucket},
            "key": {"S": key},
            "at": {"N": note["at"]["N"]},
            "spread": {"L": []},
        },
    )
    assert _writer(kit).sweep(older_than=0) == 1
    assert _accepted(kit) == EVENTS
    assert _kinds(kit)[PENDING_PREFIX] == 0
