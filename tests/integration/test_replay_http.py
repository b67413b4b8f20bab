"""``POST /replay`` and ``GET /replays/{id}`` on the embedded backend: the user guide's call, bad
requests (always 4xx JSON, never 5xx), background jobs, cancel, and the Lambda path."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pik.http import create_app
from pik.http.replay import replay_router
from pik.kit import Kit

GUIDE_EVENT = {
    "source": "demo",
    "event_type": "heartbeat",
    "entity_id": "user_123",
    "event_time": "2025-12-28T23:59:59Z",
    "payload": {"steps": 10},
}
GUIDE_REPLAY = {
    "entity_id": "user_123",
    "start_time": "2025-12-28T00:00:00Z",
    "end_time": "2025-12-29T00:00:00Z",
    "limit": 50,
    "include_duplicates": False,
}
CONTRACT_KEYS = {"replay_id", "entity_id", "scanned", "matched", "sent", "dry_run", "status"}


@pytest.fixture
def client(kit: Kit) -> Iterator[TestClient]:
    app = create_app(kit)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    app.state.committer.close()


def ingest_minutes(client: TestClient, n: int, entity: str = "user_123") -> None:
    events = [
        {**GUIDE_EVENT, "entity_id": entity, "event_time": f"2025-12-28T10:{m:02d}:00Z"}
        for m in range(n)
    ]
    answer = client.post("/ingest/batch", content=json.dumps(events))
    assert answer.status_code == 200 and answer.json()["accepted"] == n


def test_the_user_guide_replay_call(client: TestClient, kit: Kit) -> None:
    assert client.post("/ingest", content=json.dumps(GUIDE_EVENT)).json()["status"] == "ACCEPTED"
    answer = client.post(
        "/replay", content=json.dumps(GUIDE_REPLAY), headers={"X-Requester": "oncall"}
    )
    assert answer.status_code == 200
    doc = answer.json()
    assert set(doc) >= CONTRACT_KEYS
    assert {k: doc[k] for k in CONTRACT_KEYS - {"replay_id"}} == {
        "entity_id": "user_123",
        "scanned": 1,
        "matched": 1,
        "sent": 1,
        "dry_run": False,
        "status": "COMPLETED",
    }
    job = client.get(f"/replays/{doc['replay_id']}").json()
    assert (job["status"], job["requester"], job["sent"]) == ("COMPLETED", "oncall", 1)
    url = kit.clients.sqs().get_queue_url(QueueName=kit.names.replay_queue)["QueueUrl"]
    [message] = kit.clients.sqs().receive_message(QueueUrl=url)["Messages"]
    assert json.loads(message["Body"])["replay_id"] == doc["replay_id"]
    assert (
        'ReplayMessageCount{event_type="heartbeat",source="demo"} 1' in client.get("/metrics").text
    )


BAD = [
    ({**GUIDE_REPLAY, "end_time": "2025-12-27T00:00:00Z"}, 422, "invalid_window"),
    ({**GUIDE_REPLAY, "start_time": "the 28th"}, 422, "invalid_time"),
    ({k: v for k, v in GUIDE_REPLAY.items() if k != "entity_id"}, 422, "no_selector"),
    ({**GUIDE_REPLAY, "limit": -1}, 422, "invalid_limit"),
    ({**GUIDE_REPLAY, "target": "file:///etc/passwd"}, 422, "invalid_target"),
    ({**GUIDE_REPLAY, "target": "sqs://no-such-queue"}, 422, "invalid_target"),
    ({**GUIDE_REPLAY, "surprise": 1}, 422, "unexpected_field"),
    ([GUIDE_REPLAY], 422, "invalid_request"),
]


def test_invalid_requests_answer_4xx_json_with_a_reason(client: TestClient) -> None:
    for body, code, reason in BAD:
        answer = client.post("/replay", content=json.dumps(body))
        assert answer.status_code == code, (body, answer.text)
        doc = answer.json()
        assert (doc["status"], doc["reason"]) == ("ERROR", reason), body
        assert doc["detail"]


def test_no_input_gets_a_5xx(client: TestClient) -> None:
    bodies: list[bytes] = [
        b"",
        b"{",
        b"\xff\xfe",
        b"null",
        b"[" * 5000,
        b'{"entity_id": 5, "start_time": [], "end_time": {}}',
        json.dumps({**GUIDE_REPLAY, "start_time": "9999-12-31T23:59:59Z"}).encode(),
        json.dumps({**GUIDE_REPLAY, "rate_limit": "fast", "min_lag_ms": 1e30}).encode(),
        json.dumps({**GUIDE_REPLAY, "entity_id": "x" * 10_000}).encode(),
        b"x" * 100_000,
    ]
    for body in bodies:
        answer = client.post("/replay", content=body)
        assert 400 <= answer.status_code < 500, (body[:40], answer.status_code, answer.text)
        assert answer.json()["status"] == "ERROR"
    for path in (
        "/replays/nope",
        "/replays/..%2F..%2Fetc",
        "/replays/" + "a" * 300,
        "/replays/%20",
        "/replays/a/b/c",
    ):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert (answer.json()["status"], answer.json()["reason"]) == ("ERROR", "not_found"), path


def test_dry_run_over_http_sends_nothing_and_records_nothing(client: TestClient, kit: Kit) -> None:
    ingest_minutes(client, 3)
    doc = client.post("/replay", content=json.dumps({**GUIDE_REPLAY, "dry_run": True})).json()
    assert (doc["dry_run"], doc["matched"], doc["sent"]) == (True, 3, 0)
    assert len(doc["first_event_ids"]) == 3
    assert client.get(f"/replays/{doc['replay_id']}").status_code == 404
    url = kit.clients.sqs().get_queue_url(QueueName=kit.names.replay_queue)["QueueUrl"]
    assert "Messages" not in kit.clients.sqs().receive_message(QueueUrl=url)


def small_sync_app(kit: Kit) -> FastAPI:
    app = FastAPI()
    app.include_router(replay_router(kit, sync_max=3))
    return app


def wait_for(client: TestClient, replay_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/replays/{replay_id}").json()
        if job["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"replay {replay_id} did not finish")


def test_a_big_replay_answers_202_at_once_and_runs_in_the_background(
    client: TestClient, kit: Kit
) -> None:
    ingest_minutes(client, 12)
    with TestClient(small_sync_app(kit)) as api:
        answer = api.post("/replay", content=json.dumps({**GUIDE_REPLAY, "limit": None}))
        assert answer.status_code == 202
        assert answer.json()["status"] == "PLANNED"
        job = wait_for(api, answer.json()["replay_id"])
        assert (job["status"], job["matched"], job["sent"]) == ("COMPLETED", 12, 12)
        listed = api.get("/replays").json()["replays"]
        assert listed[0]["replay_id"] == job["replay_id"]


def test_cancel_route(client: TestClient, kit: Kit) -> None:
    ingest_minutes(client, 12)
    with TestClient(small_sync_app(kit)) as api:
        body = {**GUIDE_REPLAY, "limit": None, "rate_limit": 20}  # ~0.6 s of sending
        replay_id = api.post("/replay", content=json.dumps(body)).json()["replay_id"]
        cancelled = api.post(f"/replays/{replay_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
        job = wait_for(api, replay_id)
        assert job["status"] == "CANCELLED" and job["sent"] < 12
        again = api.post(f"/replays/{replay_id}/cancel")
        assert again.status_code == 409 and again.json()["reason"] == "conflict"
        assert api.post("/replays/rp-nope/cancel").status_code == 404


class LambdaContext:
    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def api_gateway_event(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/replay",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "api.example"},
        "requestContext": {
            "http": {
                "method": "POST",
                "path": "/replay",
                "protocol": "HTTP/1.1",
                "sourceIp": "1.2.3.4",
            },
            "requestId": "req-1",
            "stage": "$default",
        },
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def test_on_lambda_a_big_replay_runs_inside_the_invocation(client: TestClient, kit: Kit) -> None:
    from mangum import Mangum

    ingest_minutes(client, 8)
    handler = Mangum(small_sync_app(kit), lifespan="off")
    body = {**GUIDE_REPLAY, "limit": None}
    answer = handler(api_gateway_event(body), LambdaContext(600_000))
    doc = json.loads(answer["body"])
    assert answer["statusCode"] == 200
    assert (doc["status"], doc["sent"]) == ("COMPLETED", 8)
    # Almost out of time: it stops at once, resumable.
    answer = handler(api_gateway_event(body), LambdaContext(1_000))
    doc = json.loads(answer["body"])
    assert (doc["status"], doc["reason"], doc["sent"]) == ("FAILED", "interrupted", 0)
