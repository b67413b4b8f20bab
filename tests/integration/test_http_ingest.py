"""The HTTP API on the embedded backend: the user guide's calls, bad input, batches, concurrency.

The app runs in-process (FastAPI's TestClient) but every AWS call goes over HTTP to the moto
server the suite started.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from infra.clock import FixedClock
from pik.http import create_app
from pik.kit import Kit, build_kit
from pik.settings import Settings
from schemas.codec import decode_archive

GUIDE = {
    "source": "demo",
    "event_type": "heartbeat",
    "entity_id": "user_123",
    "event_time": "2025-12-28T23:59:59Z",
    "payload": {"steps": 10},
}


@pytest.fixture
def client(kit: Kit) -> Iterator[TestClient]:
    app = create_app(kit)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    app.state.committer.close()


def archived(kit: Kit, prefix: str) -> list:
    s3 = kit.clients.s3()
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=kit.names.bucket, Prefix=prefix).get("Contents", [])
    ]
    return [r for k in keys for r in decode_archive(kit.archive.get_file(k))]


def test_guide_event_is_accepted_then_duplicate(client: TestClient, kit: Kit) -> None:
    first = client.post("/ingest", content=json.dumps(GUIDE))
    again = client.post("/ingest", content=json.dumps(GUIDE))

    assert first.status_code == 200
    assert first.json()["status"] == "ACCEPTED"
    assert first.json()["ingest_lag_ms"] == 3_601_000  # fixed clock: 2025-12-29T01:00:00Z
    assert again.status_code == 200
    assert again.json()["status"] == "DUPLICATE"
    assert again.json()["event_id"] == first.json()["event_id"]

    records = archived(kit, "raw/source=demo/event_type=heartbeat/")
    assert sorted(r.status for r in records) == ["ACCEPTED", "DUPLICATE"]
    assert {r.raw for r in records} == {json.dumps(GUIDE).encode()}

    event = client.get(f"/events/{first.json()['event_id']}").json()
    assert event["status"] == "ACCEPTED"
    assert event["duplicates"] == 1
    assert event["event"]["record"]["raw"] == json.dumps(GUIDE)
    assert event["occurrences"][0]["status"] == "DUPLICATE"


BAD_BODIES = [
    (b'{"source": "demo"', "invalid_json"),
    (b'"just a string"', "not_an_object"),
    (b"[1, 2, 3]", "not_an_object"),
    (b"\xff\xfe\x00garbage", "invalid_utf8"),
    (json.dumps({**GUIDE, "event_time": "2025-12-28 23:59:59"}).encode(), "invalid_time"),
    (json.dumps({**GUIDE, "entity_id": ""}).encode(), "empty_field"),
    (json.dumps({**GUIDE, "entity_id": "../../etc/passwd", "source": "../x"}).encode(), None),
]


@pytest.mark.parametrize(("body", "reason"), BAD_BODIES)
def test_bad_bodies_get_a_4xx_with_a_reason_and_are_quarantined(
    client: TestClient, kit: Kit, body: bytes, reason: str | None
) -> None:
    answer = client.post("/ingest", content=body)
    if reason is None:  # a valid event whose ids try to escape their prefix
        assert answer.status_code == 200
        keys = [
            o["Key"] for o in kit.clients.s3().list_objects_v2(Bucket=kit.names.bucket)["Contents"]
        ]
        assert keys and all(k.startswith("raw/source=%2E%2E%2Fx/") for k in keys)
        return
    assert answer.status_code == 422
    assert answer.json()["status"] == "REJECTED"
    assert answer.json()["reason"] == reason
    assert answer.json()["detail"]
    [record] = archived(kit, "quarantine/")
    assert record.raw == body
    assert record.reason == reason


def test_oversized_body_is_413_and_its_head_quarantined(kit: Kit, settings: Settings) -> None:
    small = build_kit(settings.model_copy(update={"max_event_bytes": 1024}), clock=kit.clock)
    app = create_app(small)
    with TestClient(app) as client:
        answer = client.post("/ingest", content=b"x" * 50_000)
    app.state.committer.close()
    assert answer.status_code == 413
    assert answer.json()["reason"] == "too_large"
    [record] = archived(kit, "quarantine/")
    assert record.raw == b"x" * 1024


def test_a_batch_over_the_item_limit_is_413_before_any_item_is_parsed(
    kit: Kit, settings: Settings
) -> None:
    small = build_kit(settings.model_copy(update={"max_batch_items": 3}), clock=kit.clock)
    app = create_app(small)
    ndjson = b"x\n" * 4  # four one-byte lines: not events, but they are never parsed
    array = json.dumps([GUIDE] * 4).encode()
    fits = b"\n".join([json.dumps(GUIDE).encode()] * 3)
    with TestClient(app) as client:
        over = [client.post("/ingest/batch", content=body) for body in (ndjson, array)]
        under = client.post("/ingest/batch", content=fits)
    app.state.committer.close()
    for answer in over:
        assert answer.status_code == 413
        assert answer.json()["reason"] == "too_large"
        assert "more than 3 items" in answer.json()["detail"]
        assert "results" not in answer.json()
    assert sorted(r.raw for r in archived(kit, "quarantine/")) == sorted([ndjson, array])
    assert under.status_code == 200 and under.json()["accepted"] == 1


def test_batch_array_and_ndjson_answer_per_item_in_order(client: TestClient) -> None:
    items = [
        {**GUIDE, "payload": {"steps": 1}},
        {**GUIDE, "payload": "not an object"},
        {**GUIDE, "payload": {"steps": 1}},
    ]
    as_array = client.post("/ingest/batch", content=json.dumps(items))
    assert as_array.status_code == 200
    assert [r["status"] for r in as_array.json()["results"]] == [
        "ACCEPTED",
        "REJECTED",
        "DUPLICATE",
    ]
    ndjson = "\n".join(json.dumps({**i, "entity_id": "user_9"}) for i in items)
    as_lines = client.post(
        "/ingest/batch", content=ndjson, headers={"Content-Type": "application/x-ndjson"}
    )
    assert [r["status"] for r in as_lines.json()["results"]] == [
        "ACCEPTED",
        "REJECTED",
        "DUPLICATE",
    ]
    assert as_lines.json()["accepted"] == 1


def test_fifty_parallel_requests_of_one_event_make_one_accepted(client: TestClient) -> None:
    body = json.dumps({**GUIDE, "entity_id": "racer"})
    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(lambda _: client.post("/ingest", content=body), range(50)))
    statuses = Counter(a.json()["status"] for a in answers)
    assert statuses == {"ACCEPTED": 1, "DUPLICATE": 49}
    assert len({a.json()["event_id"] for a in answers}) == 1


def test_two_apps_racing_on_one_table_still_make_one_accepted(kit: Kit, settings: Settings) -> None:
    """Two processes' worth of sinks (separate group committers) racing on the same identities."""
    other = build_kit(settings, clock=FixedClock(kit.clock.now()))
    apps = [create_app(kit), create_app(other)]
    clients = [TestClient(a) for a in apps]
    bodies = [json.dumps({**GUIDE, "entity_id": f"e{i % 10}"}) for i in range(80)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(
            pool.map(
                lambda ib: clients[ib[0] % 2].post("/ingest", content=ib[1]), enumerate(bodies)
            )
        )
    for a in apps:
        a.state.committer.close()
    statuses = Counter(a.json()["status"] for a in answers)
    assert statuses == {"ACCEPTED": 10, "DUPLICATE": 70}


def test_token_guards_every_route_but_healthz(kit: Kit, settings: Settings) -> None:
    guarded = build_kit(
        settings.model_copy(update={"api_token": SecretStr("s3cret")}), clock=kit.clock
    )
    app = create_app(guarded)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert client.post("/ingest", content=json.dumps(GUIDE)).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert client.get("/metrics", headers=wrong).status_code == 401
        assert client.get("/openapi.json").status_code == 401
        right = {"Authorization": "Bearer s3cret"}
        assert client.post("/ingest", content=json.dumps(GUIDE), headers=right).status_code == 200
        for scheme in ("bearer", "BEARER"):
            other_case = {"Authorization": f"{scheme} s3cret"}
            answer = client.post("/ingest", content=json.dumps(GUIDE), headers=other_case)
            assert answer.status_code == 200
        assert client.get("/metrics", headers={"Authorization": "Basic s3cret"}).status_code == 401
    app.state.committer.close()


def test_metrics_and_openapi(client: TestClient) -> None:
    client.post("/ingest", content=json.dumps(GUIDE))
    client.post("/ingest", content=json.dumps(GUIDE))
    client.post("/ingest", content=b"nope")
    text = client.get("/metrics").text
    assert 'IngestCount{event_type="heartbeat",source="demo"} 1' in text
    assert 'DuplicateCount{event_type="heartbeat",source="demo"} 1' in text
    assert "RejectedCount" in text
    assert "IngestLagMs_bucket" in text
    spec = client.get("/openapi.json").json()
    assert {"/ingest", "/ingest/batch", "/events/{event_id}", "/healthz", "/metrics"} <= set(
        spec["paths"]
    )


def test_unknown_event_is_404_json(client: TestClient) -> None:
    assert client.get("/events/" + "0" * 64).status_code == 404
    assert client.get("/events/../../etc").status_code == 404
    assert client.get("/events/zz").json()["reason"] == "not_found"


def test_unknown_routes_and_wrong_methods_answer_the_documented_error_shape(
    client: TestClient,
) -> None:
    missing = client.get("/no/such/route")
    wrong = client.get("/ingest")

    assert missing.status_code == 404
    assert missing.json()["status"] == "ERROR"
    assert missing.json()["reason"] == "not_found"
    assert "/no/such/route" in missing.json()["detail"]
    assert wrong.status_code == 405
    assert wrong.json()["reason"] == "method_not_allowed"
    assert "GET" in wrong.json()["detail"]
    assert "POST" in wrong.headers["allow"]


def test_dry_run_answers_but_writes_nothing(kit: Kit, settings: Settings) -> None:
    dry = build_kit(settings.model_copy(update={"dry_run": True}), clock=kit.clock)
    app = create_app(dry)
    with TestClient(app) as client:
        answers = [client.post("/ingest", content=json.dumps(GUIDE)).json() for _ in range(2)]
        bad = client.post("/ingest", content=b"{")
    app.state.committer.close()
    assert [a["status"] for a in answers] == ["ACCEPTED", "ACCEPTED"]  # nothing was recorded
    assert bad.status_code == 422
    assert kit.clients.s3().list_objects_v2(Bucket=kit.names.bucket)["KeyCount"] == 0
    assert kit.index.get(answers[0]["event_id"]) is None
    assert dry.sink.last_plan.files  # it says what it would have written


def test_a_retried_request_with_its_own_request_id_is_a_redelivery_even_when_rejected(
    client: TestClient, kit: Kit
) -> None:
    """A client that retries with the same ``X-Request-Id`` (a timeout it could not tell from a
    failure) gets the same answer, and nothing is archived or counted twice: for a good event
    (the identity lookup tells) and for a rejected one (the sink looks the delivery up)."""
    bad = b'{"source":"demo","event_type":"heartbeat","entity_id":"u","payload":{}}'
    good = json.dumps(GUIDE).encode()
    answers = {
        name: [
            client.post("/ingest", content=body, headers={"X-Request-Id": f"retry-{name}-1"})
            for _ in range(2)
        ]
        for name, body in (("bad", bad), ("good", good))
    }
    first_bad, again_bad = (a.json() for a in answers["bad"])
    assert [a.status_code for a in answers["bad"]] == [422, 422]
    assert first_bad["event_id"] == again_bad["event_id"]
    assert again_bad.get("redelivery") is True and not first_bad.get("redelivery")
    assert answers["good"][1].json()["redelivery"] is True
    assert len(kit.index.occurrences(first_bad["event_id"])) == 1
    assert len(archived(kit, "quarantine/")) == 1
    assert len(archived(kit, "raw/")) == 1
    assert kit.metrics.counter("RejectedCount") == 1
    # Without the client's id every request is new: the same bad body is a second rejection.
    client.post("/ingest", content=bad)
    assert kit.metrics.counter("RejectedCount") == 2


def test_two_batches_reusing_one_request_id_are_both_archived_with_their_bytes(
    client: TestClient, kit: Kit
) -> None:
    headers = {"X-Request-Id": "reused-id-1", "Content-Type": "application/x-ndjson"}
    first = json.dumps({**GUIDE, "entity_id": "user_a"}).encode()
    second = json.dumps({**GUIDE, "entity_id": "user_b"}).encode()
    for body in (first, second):
        assert client.post("/ingest/batch", content=body, headers=headers).status_code == 200
    records = archived(kit, "raw/source=demo/event_type=heartbeat/")
    assert {r.raw for r in records} == {first, second}
