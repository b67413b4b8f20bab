"""Schema validation at HTTP ingest, on the embedded backend: a registry folder and a schema
policy in the config file (PIK_CONFIG), wired by ``build_kit`` as ``pik serve`` does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from infra.clock import FixedClock
from infra.local import EmbeddedAws
from pik.http import create_app
from pik.kit import Kit, build_kit
from schemas.codec import ArchiveRecord, decode_archive, schema_fingerprint
from tests.conftest import fresh_settings

HEARTBEAT_V1 = {
    "type": "record",
    "name": "Heartbeat",
    "fields": [{"name": "steps", "type": "int"}],
}
HEARTBEAT_V2 = {
    "type": "record",
    "name": "Heartbeat",
    "fields": [
        {"name": "steps", "type": "long"},
        {"name": "device", "type": ["null", "string"], "default": None},
    ],
}


def event(payload: dict[str, Any], source: str = "demo", event_type: str = "heartbeat") -> str:
    return json.dumps(
        {
            "source": source,
            "event_type": event_type,
            "entity_id": "user_123",
            "event_time": "2025-12-28T23:59:59Z",
            "payload": payload,
        }
    )


@pytest.fixture
def kit(aws_server: EmbeddedAws, clock: FixedClock, tmp_path: Path) -> Kit:
    registry = tmp_path / "registry"
    for version, schema in ((1, HEARTBEAT_V1), (2, HEARTBEAT_V2)):
        folder = registry / "demo" / "heartbeat"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"v{version}.avsc").write_text(json.dumps(schema))
    config = tmp_path / "pik.toml"
    config.write_text(
        '[schemas]\nregistry = "registry"\n\n[sources.strict]\nschema_policy = "require"\n'
    )
    settings = fresh_settings(aws_server.endpoint_url, config=config)
    built = build_kit(settings, clock=clock)
    built.bootstrap().run(demo_stream=False)
    return built


@pytest.fixture
def client(kit: Kit) -> Iterator[TestClient]:
    app = create_app(kit)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    app.state.committer.close()


def archived(kit: Kit, prefix: str) -> list[ArchiveRecord]:
    s3 = kit.clients.s3()
    listing = s3.list_objects_v2(Bucket=kit.names.bucket, Prefix=prefix).get("Contents", [])
    return [r for o in listing for r in decode_archive(kit.archive.get_file(o["Key"]))]


def test_payload_violating_its_schema_is_422_and_quarantined(client: TestClient, kit: Kit) -> None:
    answer = client.post("/ingest", content=event({"steps": "ten"}))

    assert answer.status_code == 422
    body = answer.json()
    assert body["status"] == "REJECTED"
    assert body["reason"] == "schema_mismatch"
    assert body["detail"].startswith("payload.steps: expected an integer (long), got string")
    assert "demo/heartbeat/v2" in body["detail"]
    [record] = archived(kit, "quarantine/")
    assert (record.status, record.reason) == ("REJECTED", "schema_mismatch")
    assert (record.source, record.event_type, record.entity_id) == ("demo", "heartbeat", "user_123")
    assert json.loads(record.raw)["payload"] == {"steps": "ten"}  # the exact bytes, kept
    assert archived(kit, "raw/") == []


def test_valid_payload_is_archived_with_its_schema_fingerprint(
    client: TestClient, kit: Kit
) -> None:
    answer = client.post("/ingest", content=event({"steps": 10, "device": "watch"}))

    assert answer.status_code == 200, answer.text
    [record] = archived(kit, "raw/")
    assert record.status == "ACCEPTED"
    assert record.schema_fingerprint == schema_fingerprint(HEARTBEAT_V2)
    explained = client.get(f"/events/{answer.json()['event_id']}").json()
    assert explained["event"]["schema_fingerprint"] == schema_fingerprint(HEARTBEAT_V2)  # index
    [delivery] = explained["deliveries"]
    assert delivery["schema_fingerprint"] == schema_fingerprint(HEARTBEAT_V2)


def test_require_policy_rejects_unregistered_event_types(client: TestClient, kit: Kit) -> None:
    strict = client.post("/ingest", content=event({"x": 1}, source="strict", event_type="ping"))
    lenient = client.post("/ingest", content=event({"x": 1}, source="demo", event_type="other"))

    assert strict.status_code == 422
    assert strict.json()["reason"] == "unknown_schema"
    assert lenient.status_code == 200
    [quarantined] = archived(kit, "quarantine/")
    assert quarantined.reason == "unknown_schema"
    [accepted] = archived(kit, "raw/")
    assert accepted.schema_fingerprint is None


def test_batch_validates_each_event(client: TestClient, kit: Kit) -> None:
    body = "\n".join([event({"steps": 1}), event({"steps": 2**40}), event({"stepz": 3})])
    answer = client.post("/ingest/batch", content=body)

    assert answer.status_code == 200
    doc = answer.json()
    assert (doc["accepted"], doc["rejected"]) == (2, 1)
    bad = doc["results"][2]
    assert bad["reason"] == "schema_mismatch"
    assert bad["detail"].startswith("payload.steps: missing")
    assert {r.schema_fingerprint for r in archived(kit, "raw/")} == {
        schema_fingerprint(HEARTBEAT_V2)
    }
