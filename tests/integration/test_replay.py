"""Replay on the embedded backend: DynamoDB Query selection, the jobs table, real SQS (standard
and FIFO), Kinesis and file targets. Events go in through the kit's ingest sink; every AWS call
crosses HTTP to the moto server the suite started."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from consumers.ingest import IngestResult, Submission
from infra.replay_jobs import JobStatus
from infra.targets import ReplayTarget, SqsTarget, TargetCrash, TargetMessage, open_target
from pik.kit import Kit, build_kit
from pik.settings import Settings
from producers.replay import ReplayService, job_json, parse_request
from schemas.codec import Provenance
from schemas.envelope import parse_body

DAY = {"start_time": "2025-12-28T00:00:00Z", "end_time": "2025-12-29T00:00:00Z"}
# The kit fixture's clock says 2025-12-29T01:00:00Z: that is every delivery's ingest time.
INGEST_WINDOW = {"start_time": "2025-12-29T00:00:00Z", "end_time": "2025-12-29T02:00:00Z"}


def event(time: str, entity: str = "user_123", **changes: Any) -> bytes:
    body = {
        "source": "demo",
        "event_type": "heartbeat",
        "entity_id": entity,
        "event_time": time,
        "payload": {"t": time, "entity": entity},
    }
    body.update(changes)
    return json.dumps(body).encode()


def ingest(kit: Kit, bodies: Sequence[bytes], label: str) -> list[IngestResult]:
    subs = [
        Submission(
            raw, Provenance(f"{label}:{i}", "http", request_id=label), parse_body(raw), str(i)
        )
        for i, raw in enumerate(bodies)
    ]
    return kit.sink.ingest(subs, label=label)


def drain(kit: Kit, url: str) -> list[dict[str, Any]]:
    """Every message on a queue, in receive order (deleted as read)."""
    sqs = kit.clients.sqs()
    bodies: list[dict[str, Any]] = []
    empty = 0
    while empty < 2:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = got.get("Messages", [])
        if not messages:
            empty += 1
            continue
        bodies.extend(json.loads(m["Body"]) for m in messages)
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )
    return bodies


def queue_url(kit: Kit) -> str:
    url: str = kit.clients.sqs().get_queue_url(QueueName=kit.names.replay_queue)["QueueUrl"]
    return url


def run(service: ReplayService, **body: Any) -> dict[str, Any]:
    started = service.replay(parse_request({**DAY, **body}), requester="it")
    return job_json(started.job, dry_run=started.dry_run)


@pytest.fixture
def service(kit: Kit) -> ReplayService:
    return kit.replay_service()


def test_window_edges_and_sub_second_order_through_sqs(kit: Kit, service: ReplayService) -> None:
    ingest(
        kit,
        [
            event("2025-12-29T00:00:00Z"),  # exactly at end: out
            event("2025-12-28T08:00:00.75Z"),
            event("2025-12-28T00:00:00Z"),  # exactly at start: in
            event("2025-12-28T08:00:00.000001Z"),
            event("2025-12-27T23:59:59.999999Z"),  # before start: out
            event("2025-12-28T08:00:00.25Z"),
        ],
        "edges",
    )
    doc = run(service, entity_id="user_123")
    assert (doc["status"], doc["scanned"], doc["matched"], doc["sent"]) == ("COMPLETED", 4, 4, 4)
    times = [m["event_time"] for m in drain(kit, queue_url(kit))]
    assert times == [
        "2025-12-28T00:00:00.000000Z",
        "2025-12-28T08:00:00.000001Z",
        "2025-12-28T08:00:00.250000Z",
        "2025-12-28T08:00:00.750000Z",
    ]
    assert kit.metrics.counter("ReplayMessageCount") == 4


def test_duplicates_and_rejected_in_and_out(kit: Kit, service: ReplayService) -> None:
    first = event("2025-12-29T00:10:00Z")
    ingest(kit, [first, event("2025-12-29T00:20:00Z"), b'{"source": "demo", "entity_id"'], "a")
    ingest(kit, [first, event("2025-12-29T00:30:00Z", payload="oops")], "b")
    url = queue_url(kit)

    plain = run(service, source="demo", **INGEST_WINDOW)
    assert (plain["matched"], plain["sent"]) == (2, 2)
    assert {m["status"] for m in drain(kit, url)} == {"ACCEPTED"}

    dups = run(service, source="demo", include_duplicates=True, **INGEST_WINDOW)
    got = drain(kit, url)
    assert dups["sent"] == 3 and [m["status"] for m in got].count("DUPLICATE") == 1
    dup = next(m for m in got if m["status"] == "DUPLICATE")
    original = next(m for m in got if m["event_id"] == dup["event_id"] and m is not dup)
    assert dup["archive"]["key"] != original["archive"]["key"]

    rejected = run(service, source="demo", include_rejected=True, **INGEST_WINDOW)
    got = drain(kit, url)
    assert rejected["sent"] == 3
    [bad] = [m for m in got if m["status"] == "REJECTED"]
    assert bad["reason"] == "payload_not_object" and bad["archive"]["key"].startswith("quarantine/")
    # The truncated body named no source: it is found under ``_unknown`` (entity unknown too).
    unknown = run(service, source="_unknown", include_rejected=True, dry_run=True, **INGEST_WINDOW)
    assert unknown["matched"] == 1 and unknown["by_status"]["REJECTED"] == 1


def test_fifo_queue_keeps_per_entity_order(kit: Kit, service: ReplayService) -> None:
    sqs = kit.clients.sqs()
    fifo = sqs.create_queue(
        QueueName=f"{kit.names.replay_queue}.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    bodies = [
        event(f"2025-12-28T10:{minute:02d}:{second:02d}Z", entity=f"user_{second % 3}")
        for minute in range(4)
        for second in range(0, 60, 7)
    ]
    ingest(kit, bodies, "fifo")
    doc = run(service, source="demo", target=fifo)
    assert doc["sent"] == len(bodies)
    # The same replay's message sent again is dropped by its deduplication id. (moto forgets an
    # id once its message is deleted, where SQS keeps it for 5 minutes: resend before reading.)
    target = open_target(
        fifo, sqs_client=kit.clients.sqs, kinesis_client=kit.clients.kinesis, default_queue=""
    )
    first = json.loads(event("2025-12-28T10:00:00Z", entity="user_0"))
    [first_id] = [
        r.event_id for r in ingest(kit, [event("2025-12-28T10:00:00Z", entity="user_0")], "again")
    ]
    dedup = f"{doc['replay_id']}:{first_id}"
    assert target.send_batch([TargetMessage("again", json.dumps(first), "user_0", dedup)]).sent
    got = drain(kit, fifo)
    assert len(got) == len(bodies)
    for entity in ("user_0", "user_1", "user_2"):
        times = [m["event_time"] for m in got if m["entity_id"] == entity]
        assert times == sorted(times) and times
    assert all(m["replay_id"] == doc["replay_id"] for m in got)


class CrashingSqs(SqsTarget):
    """Sends ``batches`` batches, then dies as a killed process would (the batch is not sent)."""

    def __init__(self, target: ReplayTarget, batches: int) -> None:
        assert isinstance(target, SqsTarget)
        super().__init__(target._sqs, target.queue_url)
        self._left = batches

    def _send(self, batch: Sequence[TargetMessage]) -> list[Any]:
        if self._left == 0:
            raise TargetCrash("killed")
        self._left -= 1
        return super()._send(batch)


def test_resume_after_a_kill_sends_nothing_twice_and_misses_nothing(kit: Kit) -> None:
    ingest(kit, [event(f"2025-12-28T09:{m:02d}:00Z") for m in range(35)], "kill")
    opener = kit.replay_targets(allow_files=False)
    crashing = kit.replay_service(
        targets=lambda spec: CrashingSqs(opener(spec), 2), checkpoint_every=10
    )
    doc = run(crashing, entity_id="user_123")
    assert (doc["status"], doc["sent"], doc["matched"]) == ("FAILED", 20, 35)
    assert "TargetCrash" in doc["reason"]

    job = crashing.get(doc["replay_id"])  # the record in DynamoDB says where it stopped
    assert job.status is JobStatus.FAILED and job.cursor and job.sent == 20
    done = kit.replay_service().resume(doc["replay_id"])
    assert (done.status, done.sent, done.matched) == (JobStatus.COMPLETED, 35, 35)
    ids = [m["event_id"] for m in drain(kit, queue_url(kit))]
    assert len(ids) == len(set(ids)) == 35


def test_cancel_from_another_process_stops_the_run(kit: Kit) -> None:
    ingest(kit, [event(f"2025-12-28T09:{m:02d}:00Z") for m in range(30)], "cancel")
    other = kit.replay_service()  # another process, sharing only the jobs table
    opener = kit.replay_targets(allow_files=False)
    holder: dict[str, str] = {}

    class CancelledAfterOne(SqsTarget):
        def _send(self, batch: Sequence[TargetMessage]) -> list[Any]:
            failures = super()._send(batch)
            other.cancel(holder["id"], "changed my mind")
            return failures

    def targets(spec: str | None) -> ReplayTarget:
        inner = opener(spec)
        assert isinstance(inner, SqsTarget)
        return CancelledAfterOne(inner._sqs, inner.queue_url)

    runner = kit.replay_service(targets=targets, checkpoint_every=10)
    job = runner.replay(
        parse_request({**DAY, "entity_id": "user_123"}),
        requester="it",
        on_planned=lambda j: holder.setdefault("id", j.replay_id),
    ).job
    assert (job.status, job.reason, job.sent) == (JobStatus.CANCELLED, "changed my mind", 10)
    assert len(drain(kit, queue_url(kit))) == 10
    assert other.get(job.replay_id).sent == 10


def test_dry_run_sends_and_records_nothing(
    kit: Kit, service: ReplayService, settings: Settings
) -> None:
    ingest(kit, [event(f"2025-12-28T09:{m:02d}:00Z") for m in range(5)], "dry")
    doc = run(service, entity_id="user_123", dry_run=True)
    assert (doc["dry_run"], doc["matched"], doc["sent"], doc["status"]) == (True, 5, 0, "PLANNED")
    assert doc["estimated_bytes"] > 0 and len(doc["first_event_ids"]) == 5
    assert drain(kit, queue_url(kit)) == []
    assert service.recent() == []
    dry_kit = build_kit(settings.model_copy(update={"dry_run": True}), clock=kit.clock)
    assert run(dry_kit.replay_service(), entity_id="user_123")["dry_run"] is True  # DRY_RUN=true
    assert drain(kit, queue_url(kit)) == []


def test_kinesis_target_keys_records_by_entity_and_file_target(
    kit: Kit, service: ReplayService, tmp_path: Path
) -> None:
    kinesis = kit.clients.kinesis()
    stream = f"{kit.names.demo_stream}-replay"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1})
    ingest(kit, [event(f"2025-12-28T09:0{m}:00Z", entity=f"user_{m % 2}") for m in range(4)], "k")

    doc = run(service, source="demo", target=f"kinesis://{stream}", with_payload=True)
    assert doc["sent"] == 4
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator)["Records"]
    assert [r["PartitionKey"] for r in records] == ["user_0", "user_1", "user_0", "user_1"]
    first = json.loads(records[0]["Data"])
    assert first["envelope"]["payload"] == {"t": "2025-12-28T09:00:00Z", "entity": "user_0"}

    out = tmp_path / "replay.ndjson"
    run(service, source="demo", target=f"file://{out}")
    assert len(out.read_text().splitlines()) == 4


def test_jobs_are_listed_newest_first(kit: Kit, service: ReplayService) -> None:
    ingest(kit, [event("2025-12-28T09:00:00Z")], "list")
    first = run(service, entity_id="user_123")
    kit.clock.advance(seconds=1)  # type: ignore[attr-defined]
    second = run(service, entity_id="nobody")
    assert second["signal"]["reason"] == "nothing_matched"
    listed = [j.replay_id for j in service.recent(5)]
    assert listed == [second["replay_id"], first["replay_id"]]
    assert service.get(first["replay_id"]).requester == "it"


def test_unknown_target_is_refused_before_anything_runs(kit: Kit, service: ReplayService) -> None:
    from infra.targets import InvalidTarget

    with pytest.raises(InvalidTarget):
        run(service, entity_id="user_123", target="sqs://no-such-queue")
    with pytest.raises(InvalidTarget):
        run(service, entity_id="user_123", target="kinesis://no-such-stream")
    assert service.recent() == []
