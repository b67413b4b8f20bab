"""Replay jobs don't wedge, on the embedded backend: a message too large for SQS with its
payload goes pointer-only and the job completes; a cancel from another process stops a paced run
within a second, and the job records exactly what reached the queue."""

from __future__ import annotations

import json
import threading
import time

from infra.errors import NotFound
from infra.replay_jobs import JobStatus, ReplayJob
from pik.kit import Kit
from producers.replay import ReplayService, parse_request
from tests.integration.test_replay import DAY, drain, event, ingest, queue_url


def test_an_event_too_large_for_sqs_with_its_payload_is_sent_pointer_only(kit: Kit) -> None:
    # within the 256 KiB event limit, over SQS's 256 KiB once wrapped with its envelope
    big = json.dumps(
        {
            "source": "demo",
            "event_type": "heartbeat",
            "entity_id": "user_123",
            "event_time": "2025-12-28T09:01:00Z",
            "payload": {"blob": "x" * 261_900},
        }
    ).encode()
    bodies = [event("2025-12-28T09:00:00Z"), big, event("2025-12-28T09:02:00Z")]
    results = ingest(kit, bodies, "big")
    service = kit.replay_service()
    job = service.replay(
        parse_request({**DAY, "entity_id": "user_123", "with_payload": True}), requester="it"
    ).job
    assert (job.status, job.sent, job.payload_omitted) == (JobStatus.COMPLETED, 3, 1)
    assert service.get(job.replay_id).payload_omitted == 1  # recorded in DynamoDB
    by_id = {m["event_id"]: m for m in drain(kit, queue_url(kit))}
    assert set(by_id) == {r.event_id for r in results}
    pointer_only = by_id[results[1].event_id]
    assert pointer_only["payload_omitted"] == "too_large" and "envelope" not in pointer_only
    assert pointer_only["archive"] == results[1].archive.to_json()  # type: ignore[union-attr]
    assert all("envelope" in by_id[r.event_id] for r in (results[0], results[2]))


def running(service: ReplayService, planned: list[str]) -> bool:
    """The job is recorded (``on_planned`` comes just before) and RUNNING."""
    try:
        return bool(planned) and service.get(planned[0]).status is JobStatus.RUNNING
    except NotFound:
        return False


def test_a_cancel_from_another_process_stops_a_paced_run_within_a_second(kit: Kit) -> None:
    ingest(kit, [event(f"2025-12-28T{h:02d}:{m:02d}:00Z") for h in (8, 9) for m in range(60)], "c")
    runner, other = kit.replay_service(), kit.replay_service()
    planned: list[str] = []
    finished: list[ReplayJob] = []

    def run() -> None:
        request = parse_request({**DAY, "entity_id": "user_123", "rate_limit": 30})
        started = runner.replay(
            request, requester="it", on_planned=lambda j: planned.append(j.replay_id)
        )
        finished.append(started.job)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not running(runner, planned):
        time.sleep(0.05)
    time.sleep(0.7)  # some batches out, far from the 120 of the plan (4 s at 30/s)
    cancelled_at = time.monotonic()
    stopped = other.wait_stopped(other.cancel(planned[0], "changed my mind"))
    assert stopped is not None, "no runner recorded that it stopped"
    assert time.monotonic() - cancelled_at < 1.5
    thread.join(timeout=2.0)
    assert not thread.is_alive()
    delivered = drain(kit, queue_url(kit))
    assert stopped.status is JobStatus.CANCELLED and stopped.reason == "changed my mind"
    assert 0 < stopped.sent == len(delivered) < 120
    assert finished[0].sent == stopped.sent
