"""consumers/ingest.py: every record ends archived with its exact bytes, and indexed, once."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from consumers.ingest import IngestResult, Submission
from infra.archive import ArchiveReader, MemoryRawArchive
from infra.index import Claim, Holder, MemoryEventIndex, Occurrence
from schemas.codec import ArchiveRecord, decode_archive
from schemas.envelope import Reason, Status, parse_body
from schemas.identity import canonical_json, event_id, rejected_event_id
from tests.unit.support import NOW, MemoryKit, event_body, submission

GUIDE = event_body()
GUIDE_ID = event_id(parse_body(GUIDE))  # type: ignore[arg-type]
OTHER = event_body(entity_id="user_456")
NOT_JSON = b"{not json"
BAD_UTF8 = b'{"source": "\xff"}'


class CrashingArchive(MemoryRawArchive):
    """An archive that fails every write while ``down`` (the process dies mid-batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    def put_file(self, key: str, body: bytes) -> bool:
        if self.down:
            raise ConnectionError("archive unreachable")
        return super().put_file(key, body)


class CrashingIndex(MemoryEventIndex):
    """An index whose claims fail while ``down`` (the process dies after the archive write)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    def claim(
        self, claims: Sequence[Claim], occurrences: Sequence[Occurrence] = ()
    ) -> dict[str, Holder]:
        if self.down:
            raise ConnectionError("index unreachable")
        return super().claim(claims, occurrences)


def archived(archive: MemoryRawArchive) -> list[tuple[str, ArchiveRecord]]:
    return [(key, rec) for key, body in archive.files.items() for rec in decode_archive(body)]


def ingest(kit: MemoryKit, *subs: Submission, label: str = "b1") -> list[IngestResult]:
    return kit.sink.ingest(list(subs), label=label)


def statuses(results: list[IngestResult]) -> list[Status]:
    return [r.status for r in results]


# -- first sight, duplicates, rejections --------------------------------------------------------


def test_new_event_is_accepted_archived_and_indexed(memory_kit: MemoryKit) -> None:
    (result,) = ingest(memory_kit, submission(GUIDE, "occ-1"))
    assert result.status is Status.ACCEPTED
    assert result.event_id == GUIDE_ID
    assert not result.redelivery
    assert result.archive is not None
    assert result.archive.key == (
        "raw/source=demo/event_type=heartbeat/ingest_date=2025-12-29/hour=01/b1-0-0.avro"
    )
    record = ArchiveReader(memory_kit.archive).read(result.archive)
    assert record.raw == GUIDE
    assert record.status == "ACCEPTED"
    assert record.event_id == GUIDE_ID
    assert record.payload == canonical_json({"steps": 10})
    assert record.ingest_time == NOW
    assert record.provenance.occurrence_id == "occ-1"
    item = memory_kit.index.get(GUIDE_ID)
    assert item is not None
    assert item["first_occurrence"] == "occ-1"
    assert (item["archive_key"], item["archive_position"]) == (result.archive.key, 0)


def test_lag_is_ingest_time_minus_event_time_on_the_injected_clock(memory_kit: MemoryKit) -> None:
    (first,) = ingest(memory_kit, submission(GUIDE, "occ-1"))
    assert first.lag_ms == 3_601_000  # 23:59:59Z → 01:00:00Z
    memory_kit.clock.advance(seconds=9, milliseconds=500)
    (second,) = ingest(memory_kit, submission(OTHER, "occ-2"), label="b2")
    assert second.lag_ms == 3_610_500
    assert second.to_json()["ingest_lag_ms"] == 3_610_500
    record = ArchiveReader(memory_kit.archive).read(second.archive)  # type: ignore[arg-type]
    assert record.lag_ms == 3_610_500


def test_same_event_twice_in_one_batch(memory_kit: MemoryKit) -> None:
    results = ingest(memory_kit, submission(GUIDE, "occ-1", "0"), submission(GUIDE, "occ-2", "1"))
    assert statuses(results) == [Status.ACCEPTED, Status.DUPLICATE]
    assert results[1].event_id == results[0].event_id
    assert results[1].first_occurrence == "occ-1"
    item = memory_kit.index.get(GUIDE_ID)
    assert item is not None
    assert item["first_occurrence"] == "occ-1"
    assert item["dup_occurrences"] == ["occ-2"]
    (occurrence,) = memory_kit.index.occurrences(GUIDE_ID)
    assert (occurrence["status"], occurrence["occurrence_id"]) == ("DUPLICATE", "occ-2")


def test_one_delivery_retried_inside_one_batch_is_a_redelivery_not_a_duplicate(
    memory_kit: MemoryKit,
) -> None:
    # Four clients' retries of one request (one occurrence id) group-committed together.
    results = ingest(memory_kit, *(submission(GUIDE, "http:r1:0", "0") for _ in range(4)))
    assert statuses(results) == [Status.ACCEPTED] * 4
    assert [r.redelivery for r in results] == [False, True, True, True]
    assert {r.archive for r in results} == {results[0].archive}
    assert all(r.first_occurrence is None for r in results)
    assert len(archived(memory_kit.archive)) == 1
    assert memory_kit.index.occurrences(GUIDE_ID) == []  # never its own duplicate
    item = memory_kit.index.get(GUIDE_ID)
    assert item is not None and not item.get("dup_occurrences")
    assert memory_kit.metrics.counter("IngestCount") == 1
    assert memory_kit.metrics.counter("DuplicateCount") == 0
    assert memory_kit.metrics.counter("RedeliveryCount") == 3


def test_a_retried_duplicate_inside_one_batch_is_one_duplicate(memory_kit: MemoryKit) -> None:
    ingest(memory_kit, submission(GUIDE, "occ-1"))
    results = ingest(memory_kit, submission(GUIDE, "occ-2"), submission(GUIDE, "occ-2"), label="b2")
    assert [(r.status, r.redelivery) for r in results] == [
        (Status.DUPLICATE, False),
        (Status.DUPLICATE, True),
    ]
    assert [r.first_occurrence for r in results] == ["occ-1", "occ-1"]
    assert len(memory_kit.index.occurrences(GUIDE_ID)) == 1
    assert memory_kit.metrics.counter("DuplicateCount") == 1


def test_same_event_in_a_later_batch_is_a_duplicate(memory_kit: MemoryKit) -> None:
    ingest(memory_kit, submission(GUIDE, "occ-1"))
    memory_kit.clock.advance(hours=1)
    (result,) = ingest(memory_kit, submission(GUIDE, "occ-2"), label="b2")
    assert result.status is Status.DUPLICATE
    assert result.first_occurrence == "occ-1"
    assert not result.redelivery
    item = memory_kit.index.get(GUIDE_ID)
    assert item is not None
    assert item["first_occurrence"] == "occ-1"  # never overwritten by a duplicate
    assert item["dup_occurrences"] == ["occ-2"]
    record = ArchiveReader(memory_kit.archive).read(result.archive)  # type: ignore[arg-type]
    assert (record.status, record.raw) == ("DUPLICATE", GUIDE)


def test_rejected_record_is_quarantined_with_its_reason(memory_kit: MemoryKit) -> None:
    raw = event_body(payload=[1])
    (result,) = ingest(memory_kit, submission(raw, "occ-1"))
    assert result.status is Status.REJECTED
    assert result.reason == Reason.PAYLOAD_NOT_OBJECT.value
    assert result.event_id == rejected_event_id(raw)
    assert result.to_json()["reason"] == "payload_not_object"
    assert result.archive is not None
    assert result.archive.key.startswith(
        "quarantine/source=demo/event_type=heartbeat/ingest_date=2025-12-29/hour=01/"
    )
    record = ArchiveReader(memory_kit.archive).read(result.archive)
    assert (record.status, record.reason, record.raw) == ("REJECTED", "payload_not_object", raw)
    assert record.detail == result.detail
    (occurrence,) = memory_kit.index.occurrences(result.event_id)
    assert (occurrence["status"], occurrence["reason"]) == ("REJECTED", "payload_not_object")
    assert memory_kit.index.get(result.event_id) is None  # no identity item for a rejection


def test_unparseable_records_are_quarantined_under_unknown(memory_kit: MemoryKit) -> None:
    results = ingest(memory_kit, submission(NOT_JSON, "a", "0"), submission(BAD_UTF8, "b", "1"))
    assert statuses(results) == [Status.REJECTED, Status.REJECTED]
    assert [r.reason for r in results] == ["invalid_json", "invalid_utf8"]
    (key,) = {r.archive.key for r in results if r.archive}
    assert key.startswith("quarantine/source=_unknown/event_type=_unknown/")


def test_every_record_is_archived_with_its_exact_bytes(memory_kit: MemoryKit) -> None:
    batch = [
        submission(GUIDE, "o0", "0"),
        submission(GUIDE, "o1", "1"),
        submission(OTHER, "o2", "2"),
        submission(NOT_JSON, "o3", "3"),
        submission(BAD_UTF8, "o4", "4"),
        submission(event_body(source="billing"), "o5", "5"),
        submission(event_body(entity_id=7), "o6", "6"),
        submission(bytes(range(256)), "o7", "7"),
    ]
    results = ingest(memory_kit, *batch)
    assert statuses(results) == [
        Status.ACCEPTED,
        Status.DUPLICATE,
        Status.ACCEPTED,
        Status.REJECTED,
        Status.REJECTED,
        Status.ACCEPTED,
        Status.REJECTED,
        Status.REJECTED,
    ]
    records = archived(memory_kit.archive)
    assert sorted(rec.provenance.occurrence_id for _, rec in records) == [
        s.provenance.occurrence_id for s in batch
    ]
    by_occurrence = {rec.provenance.occurrence_id: (key, rec) for key, rec in records}
    reader = ArchiveReader(memory_kit.archive)
    for sub, result in zip(batch, results, strict=True):
        key, rec = by_occurrence[sub.provenance.occurrence_id]
        assert rec.raw == sub.raw
        assert rec.status == result.status.value
        assert key.startswith("quarantine/" if result.status is Status.REJECTED else "raw/")
        assert result.archive is not None
        assert reader.read(result.archive) == rec


def test_one_file_per_partition_named_by_batch_and_positions(memory_kit: MemoryKit) -> None:
    batch = [
        submission(GUIDE, "o0", "10"),
        submission(event_body(source="billing"), "o1", "11"),
        submission(OTHER, "o2", "12"),
        submission(NOT_JSON, "o3", "13"),
    ]
    ingest(memory_kit, *batch, label="shard-7")
    assert sorted(memory_kit.archive.files) == [
        "quarantine/source=_unknown/event_type=_unknown/ingest_date=2025-12-29/hour=01/shard-7-13-13.avro",
        "raw/source=billing/event_type=heartbeat/ingest_date=2025-12-29/hour=01/shard-7-11-11.avro",
        "raw/source=demo/event_type=heartbeat/ingest_date=2025-12-29/hour=01/shard-7-10-12.avro",
    ]
    assert memory_kit.sink.last_plan.files == {key: 1 for key in memory_kit.archive.files} | {
        "raw/source=demo/event_type=heartbeat/ingest_date=2025-12-29/hour=01/shard-7-10-12.avro": 2
    }


def test_empty_batch_writes_nothing(memory_kit: MemoryKit) -> None:
    assert memory_kit.sink.ingest([], label="b") == []
    assert memory_kit.archive.files == {}


# -- redelivery -------------------------------------------------------------------------------


def test_redelivery_is_absorbed(memory_kit: MemoryKit) -> None:
    ingest(memory_kit, submission(GUIDE, "shard-1:42"))
    files_before = dict(memory_kit.archive.files)
    memory_kit.clock.advance(minutes=10)
    (again,) = ingest(memory_kit, submission(GUIDE, "shard-1:42"), label="b2")
    assert again.status is Status.ACCEPTED
    assert again.redelivery
    assert again.to_json()["redelivery"] is True
    assert again.archive is None
    assert memory_kit.archive.files == files_before
    assert memory_kit.index.occurrences(GUIDE_ID) == []
    assert memory_kit.metrics.counter("IngestCount") == 1
    assert memory_kit.metrics.counter("DuplicateCount") == 0
    assert memory_kit.metrics.counter("RedeliveryCount") == 1


def test_redelivered_duplicate_stays_one_duplicate(memory_kit: MemoryKit) -> None:
    ingest(memory_kit, submission(GUIDE, "occ-1"))
    ingest(memory_kit, submission(GUIDE, "occ-2"), label="b2")
    files_before = dict(memory_kit.archive.files)
    (again,) = ingest(memory_kit, submission(GUIDE, "occ-2"), label="b3")
    assert (again.status, again.redelivery) == (Status.DUPLICATE, True)
    assert memory_kit.archive.files == files_before
    assert memory_kit.metrics.counter("DuplicateCount") == 1
    assert len(memory_kit.index.occurrences(GUIDE_ID)) == 1


# -- crashes ------------------------------------------------------------------------------------


def test_a_failed_archive_write_fails_the_batch_loudly_and_indexes_nothing() -> None:
    archive = CrashingArchive()
    kit = MemoryKit(archive=archive)
    with pytest.raises(ConnectionError):
        ingest(kit, submission(GUIDE, "occ-1"))
    assert archive.files == {}
    assert kit.index.get(GUIDE_ID) is None  # nothing points at a file that is not there


def crashed_kit() -> tuple[MemoryKit, CrashingIndex]:
    """A kit whose first attempt at GUIDE (occ-1) died after archiving, before indexing."""
    index = CrashingIndex()
    kit = MemoryKit(index=index)
    with pytest.raises(ConnectionError):
        ingest(kit, submission(GUIDE, "occ-1"))
    index.down = False
    assert kit.index.get(GUIDE_ID) is None
    return kit, index


def test_same_delivery_retried_after_a_crash_is_accepted_on_the_same_file() -> None:
    kit, _ = crashed_kit()
    files = dict(kit.archive.files)
    kit.clock.advance(seconds=5)
    (result,) = ingest(kit, submission(GUIDE, "occ-1"))
    assert (result.status, result.redelivery) == (Status.ACCEPTED, False)
    assert kit.archive.files == files
    item = kit.index.get(GUIDE_ID)
    assert item is not None
    assert result.archive is not None
    assert (item["archive_key"], item["first_occurrence"]) == (result.archive.key, "occ-1")


def test_another_delivery_after_a_crash_is_accepted_and_the_orphan_copy_kept() -> None:
    kit, _ = crashed_kit()
    (result,) = ingest(kit, submission(GUIDE, "occ-2"), label="b2")
    assert result.status is Status.ACCEPTED
    item = kit.index.get(GUIDE_ID)
    assert item is not None
    assert item["first_occurrence"] == "occ-2"
    # at least once in the archive: the crashed attempt's copy stays, unindexed
    copies = sorted(rec.provenance.occurrence_id for _, rec in archived(kit.archive))
    assert copies == ["occ-1", "occ-2"]


def test_rerun_after_crash_between_archive_and_index_lands_on_the_same_file() -> None:
    index = CrashingIndex()
    kit = MemoryKit(index=index)
    batch = [submission(GUIDE, "s:1", "1"), submission(OTHER, "s:2", "2")]
    with pytest.raises(ConnectionError):
        kit.sink.ingest(batch, label="shard-1", at=NOW)
    files = dict(kit.archive.files)
    assert len(files) == 1
    index.down = False
    kit.clock.advance(seconds=30)
    results = kit.sink.ingest(batch, label="shard-1", at=NOW)
    assert statuses(results) == [Status.ACCEPTED, Status.ACCEPTED]
    assert kit.archive.files == files  # same key, nothing rewritten, nothing added
    for result in results:
        item = kit.index.get(result.event_id)
        assert item is not None
        assert result.archive is not None
        assert item["archive_key"] == result.archive.key


# -- dry run and metrics ------------------------------------------------------------------------


def mixed_batch() -> list[Submission]:
    return [
        submission(GUIDE, "o0", "0"),
        submission(GUIDE, "o1", "1"),
        submission(NOT_JSON, "o2", "2"),
        submission(OTHER, "o3", "3"),
    ]


def test_dry_run_reports_the_same_statuses_and_writes_nothing() -> None:
    real, dry = MemoryKit(), MemoryKit(dry_run=True)
    dry_results = ingest(dry, *mixed_batch())
    real_results = ingest(real, *mixed_batch())
    assert statuses(dry_results) == statuses(real_results)
    assert [r.event_id for r in dry_results] == [r.event_id for r in real_results]
    assert dry.archive.files == {}
    assert dry.index.items == {}
    assert dry.sink.last_plan == real.sink.last_plan
    assert dry.sink.last_plan.files


def test_dry_run_sees_what_is_already_indexed() -> None:
    real = MemoryKit()
    ingest(real, submission(GUIDE, "o0"))
    dry = MemoryKit(archive=real.archive, index=real.index, dry_run=True)
    files, items = dict(real.archive.files), {k: dict(v) for k, v in real.index.items.items()}
    (result,) = ingest(dry, submission(GUIDE, "o9"), label="b2")
    assert result.status is Status.DUPLICATE
    assert real.archive.files == files
    assert real.index.items == items


def test_metrics_count_each_status(memory_kit: MemoryKit) -> None:
    ingest(memory_kit, *mixed_batch())
    ingest(memory_kit, submission(GUIDE, "o5"), label="b2")
    m = memory_kit.metrics
    assert m.counter("IngestCount") == 2
    assert m.counter("DuplicateCount") == 2
    assert m.counter("RejectedCount") == 1
    assert m.counter("IngestCount", source="demo", event_type="heartbeat") == 2
    assert m.counter("RejectedCount", source=None, event_type=None) == 1
    assert 'IngestLagMs_count{event_type="heartbeat",source="demo"} 2' in m.prometheus()


# -- known bugs -----------------------------------------------------------------------------------


def test_lag_is_exact_to_the_millisecond(memory_kit: MemoryKit) -> None:
    memory_kit.clock.advance(hours=-1, milliseconds=1)  # event time + 1.001 s
    (result,) = ingest(memory_kit, submission(GUIDE, "occ-1"))
    assert result.lag_ms == 1_001


def test_redelivered_original_behind_a_new_copy_is_still_accepted(memory_kit: MemoryKit) -> None:
    ingest(memory_kit, submission(GUIDE, "occ-1"))
    results = ingest(
        memory_kit, submission(GUIDE, "occ-2", "0"), submission(GUIDE, "occ-1", "1"), label="b2"
    )
    assert [(r.status, r.redelivery) for r in results] == [
        (Status.DUPLICATE, False),
        (Status.ACCEPTED, True),
    ]


def test_crashed_delivery_retried_behind_a_new_copy_loses_nothing() -> None:
    kit, _ = crashed_kit()
    results = ingest(
        kit, submission(GUIDE, "occ-2", "0"), submission(GUIDE, "occ-1", "1"), label="b2"
    )
    assert statuses(results) == [Status.ACCEPTED, Status.DUPLICATE]
    kept = [(rec.provenance.occurrence_id, rec.status) for _, rec in archived(kit.archive)]
    assert sorted(kept) == [("occ-1", "ACCEPTED"), ("occ-1", "DUPLICATE"), ("occ-2", "ACCEPTED")]
    item = kit.index.get(GUIDE_ID)
    assert item is not None
    assert item["dup_occurrences"] == ["occ-1"]


@pytest.mark.parametrize(
    "raw",
    [
        event_body(payload={"note": "\ud800"}),  # json.dumps writes the escape \\ud800
        json.dumps({"source": "\ud800", "event_type": "heartbeat"}).encode(),
    ],
    ids=["payload", "source"],
)
def test_lone_surrogate_escapes_are_quarantined_not_an_error(
    memory_kit: MemoryKit, raw: bytes
) -> None:
    (result,) = ingest(memory_kit, submission(raw, "occ-1"))
    assert result.status is Status.REJECTED
    assert [rec.raw for _, rec in archived(memory_kit.archive)] == [raw]
