"""The API Gateway Lambda handler drives the same app, against the embedded backend."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pik.kit import Kit
from pik.lambdas import api as lambda_api
from pik.settings import Settings

GUIDE = {
    "source": "demo",
    "event_type": "heartbeat",
    "entity_id": "user_123",
    "event_time": "2025-12-28T23:59:59Z",
    "payload": {"steps": 10},
}


def http_api_event(method: str, path: str, body: bytes = b"") -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "api.example"},
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4"},
            "requestId": "req-1",
            "stage": "$default",
        },
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def test_ingest_through_the_lambda_handler(
    kit: Kit,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", settings.endpoint_url or "")
    for field in ("bucket", "events_table"):
        monkeypatch.setenv(f"PIK_{field.upper()}", getattr(settings, field))
    lambda_api._built.cache_clear()
    first = lambda_api.handler(http_api_event("POST", "/ingest", json.dumps(GUIDE).encode()), None)
    again = lambda_api.handler(http_api_event("POST", "/ingest", json.dumps(GUIDE).encode()), None)
    bad = lambda_api.handler(http_api_event("POST", "/ingest", b"[1]"), None)
    lambda_api._built.cache_clear()

    assert first["statusCode"] == 200
    assert json.loads(first["body"])["status"] == "ACCEPTED"
    assert json.loads(again["body"])["status"] == "DUPLICATE"
    assert bad["statusCode"] == 422
    assert kit.index.get(json.loads(first["body"])["event_id"]) is not None
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert sum(doc.get("IngestCount", 0) for doc in emf) == 1
    assert sum(doc.get("DuplicateCount", 0) for doc in emf) == 1
