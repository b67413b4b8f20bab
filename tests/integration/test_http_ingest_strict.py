"""The HTTP API on the embedded backend refuses what it cannot read one way only (issue 13): a
JSON object naming a key twice is ``duplicate_key``; a time outside RFC 3339, finer than a
microsecond or out of range in UTC is ``invalid_time``. Each is quarantined with its bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from pik.http import create_app
from pik.kit import Kit
from tests.integration.test_http_ingest import GUIDE, archived


@pytest.fixture
def client(kit: Kit) -> Iterator[TestClient]:
    app = create_app(kit)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    app.state.committer.close()


def test_duplicate_keys_are_rejected_on_ingest_and_batch_and_quarantined(
    client: TestClient, kit: Kit
) -> None:
    body = json.dumps(GUIDE)[:-1].encode() + b', "source": "b"}'
    answer = client.post("/ingest", content=body)
    assert answer.status_code == 422
    assert (answer.json()["status"], answer.json()["reason"]) == ("REJECTED", "duplicate_key")
    nested = json.dumps(GUIDE).replace('{"steps": 10}', '{"steps": 10, "steps": 11}')
    batch = client.post("/ingest/batch", content=f"[{json.dumps(GUIDE)}, {nested}]")
    assert [r["status"] for r in batch.json()["results"]] == ["ACCEPTED", "REJECTED"]
    assert batch.json()["results"][1]["reason"] == "duplicate_key"
    quarantined = archived(kit, "quarantine/")
    assert sorted(r.raw for r in quarantined) == sorted([body, nested.encode()])
    assert {r.reason for r in quarantined} == {"duplicate_key"}
    assert not archived(kit, "raw/source=b/")  # never indexed under the last value


@pytest.mark.parametrize(
    "when",
    [
        "20251228T100000Z",
        "2025-W52-7T10:00:00Z",
        "2025-12-28T10:00:00+0100",
        "2025-12-28T10:00:00,5Z",
        "2025-12-28T10:00:00.1234561Z",
        "0001-01-01T00:30:00+01:00",
    ],
)
def test_times_outside_the_contract_are_invalid_time(
    client: TestClient, kit: Kit, when: str
) -> None:
    body = json.dumps({**GUIDE, "event_time": when}).encode()
    answer = client.post("/ingest", content=body)
    assert answer.status_code == 422
    assert answer.json()["reason"] == "invalid_time"
    [record] = archived(kit, "quarantine/")
    assert (record.raw, record.reason) == (body, "invalid_time")


def test_an_event_before_year_1000_is_archived_and_keyed_with_a_four_digit_year(
    client: TestClient, kit: Kit
) -> None:
    answer = client.post(
        "/ingest", content=json.dumps({**GUIDE, "event_time": "0999-06-01T10:00:00Z"})
    )
    assert answer.status_code == 200, answer.json()
    [record] = archived(kit, "raw/")
    assert record.event_time.year == 999
    doc = client.get(f"/events/{answer.json()['event_id']}").json()
    assert "0999-06-01T10:00:00" in json.dumps(doc)
    assert '"999-06-01' not in json.dumps(doc)
