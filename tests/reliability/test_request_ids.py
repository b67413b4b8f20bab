"""Request ids reused, as careless or hostile clients reuse them: no acknowledged event is lost
or pointed at another delivery's record, and retries of one delivery are redeliveries, never
duplicates. Through the HTTP app (group commit included) on the embedded backend."""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pik.http import create_app
from pik.kit import Kit
from schemas.codec import decode_archive

pytestmark = pytest.mark.reliability


def _event(entity: str, n: int) -> dict[str, Any]:
    return {
        "source": "clients",
        "event_type": "order",
        "entity_id": entity,
        "event_time": f"2025-12-28T10:{n:02d}:00Z",
        "payload": {"n": n},
    }


def _raw_of(client: TestClient, event_id: str) -> str:
    doc = client.get(f"/events/{event_id}").json()
    raw: str = doc["event"]["record"]["raw"]
    return raw


def test_two_clients_reusing_one_request_id_both_keep_their_own_bytes(kit: Kit) -> None:
    shared = json.dumps(_event("both", 0))  # an event both clients send (a true duplicate)
    bodies = [
        "\n".join([shared, *(json.dumps(_event(who, n)) for n in range(1, 20))])
        for who in ("alice", "bob")
    ]
    app = create_app(kit)
    barrier = threading.Barrier(2)
    with TestClient(app) as client:

        def post(body: str) -> dict[str, Any]:
            barrier.wait()
            answer = client.post(
                "/ingest/batch", content=body, headers={"X-Request-Id": "same-id-for-all"}
            )
            assert answer.status_code == 200, answer.text
            doc: dict[str, Any] = answer.json()
            return doc

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(post, bodies))
        statuses = Counter(
            (r["status"], r.get("redelivery", False)) for a in answers for r in a["results"]
        )
        assert statuses == {("ACCEPTED", False): 39, ("DUPLICATE", False): 1}
        for body, answer in zip(bodies, answers, strict=True):
            for line, result in zip(body.split("\n"), answer["results"], strict=True):
                if result["status"] == "ACCEPTED":  # its claim points at its own bytes
                    assert _raw_of(client, result["event_id"]) == line
        shared_id = answers[0]["results"][0]["event_id"]
        doc = client.get(f"/events/{shared_id}").json()
        assert doc["duplicates"] == 1
        occurrences = [d["occurrence_id"] for d in doc["deliveries"] if d["status"] == "DUPLICATE"]
        assert occurrences and doc["event"]["first_occurrence"] not in occurrences
    app.state.committer.close()
    s3 = kit.clients.s3()
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=kit.names.bucket, Prefix="raw/").get("Contents", [])
    ]
    archived = Counter(r.raw for k in keys for r in decode_archive(kit.archive.get_file(k)))
    for body in bodies:  # every line of both batches, byte for byte, in the archive
        for line in body.split("\n"):
            assert archived[line.encode()] >= 1
    assert archived[shared.encode()] == 2  # the duplicate is archived too


def test_concurrent_retries_of_one_request_are_redeliveries(kit: Kit) -> None:
    body = json.dumps(_event("carol", 30))
    app = create_app(kit)
    barrier = threading.Barrier(4)
    with TestClient(app) as client:

        def post(_: int) -> dict[str, Any]:
            barrier.wait()
            answer = client.post("/ingest", content=body, headers={"X-Request-Id": "retry-1"})
            assert answer.status_code == 200, answer.text
            doc: dict[str, Any] = answer.json()
            return doc

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(post, range(4)))
        assert sorted(a.get("redelivery", False) for a in answers) == [False, True, True, True]
        assert {a["status"] for a in answers} == {"ACCEPTED"}
        doc = client.get(f"/events/{answers[0]['event_id']}").json()
        assert doc["duplicates"] == 0
        assert [d for d in doc["deliveries"] if d["status"] == "DUPLICATE"] == []
    app.state.committer.close()
