"""``ReplayClient`` against a stub HTTP server: what it sends, and how refusals come back."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from producers.replay import ReplayClient, ReplayClientError


class Stub(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []  # noqa: RUF012 - reset by the fixture, one server per test
    polls = 0

    def log_message(self, *_: Any) -> None:
        pass

    def _answer(self, code: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Stub.seen.append({"path": self.path, "body": body, "headers": dict(self.headers)})
        if body.get("source") == "demo":
            self._answer(422, {"status": "ERROR", "reason": "no_selector", "detail": "give one"})
        else:
            self._answer(202, {"replay_id": "rp-1", "status": "PLANNED"})

    def do_GET(self) -> None:
        Stub.polls += 1
        status = "RUNNING" if Stub.polls < 3 else "COMPLETED"
        self._answer(200, {"replay_id": self.path.rsplit("/", 1)[-1], "status": status})


@pytest.fixture
def base_url() -> Iterator[str]:
    Stub.seen, Stub.polls = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_replay_sends_the_request_and_waits_for_the_job(base_url: str) -> None:
    client = ReplayClient(base_url, token="s3cret", requester="bot")
    job = client.replay(
        entity_id="user_123",
        start_time=datetime(2025, 12, 28, tzinfo=UTC),
        end_time="2025-12-29T00:00:00Z",
        limit=50,
    )
    assert job == {"replay_id": "rp-1", "status": "PLANNED"}
    [call] = Stub.seen
    assert call["path"] == "/replay"
    assert call["body"] == {
        "entity_id": "user_123",
        "start_time": "2025-12-28T00:00:00Z",
        "end_time": "2025-12-29T00:00:00Z",
        "limit": 50,
        "include_duplicates": False,
        "include_rejected": False,
        "dry_run": False,
        "with_payload": False,
    }
    assert call["headers"]["Authorization"] == "Bearer s3cret"
    assert call["headers"]["X-Requester"] == "bot"
    assert client.wait("rp-1", poll_seconds=0.01)["status"] == "COMPLETED"


def test_refusals_and_unreachable_servers_raise_with_the_reason(base_url: str) -> None:
    client = ReplayClient(base_url)
    with pytest.raises(ReplayClientError) as refused:
        client.replay(source="demo", start_time="2025-12-28", end_time="2025-12-29")
    assert (refused.value.status, refused.value.reason) == (422, "no_selector")
    with pytest.raises(ReplayClientError) as down:
        ReplayClient("http://127.0.0.1:9", timeout=2).get("rp-1")
    assert down.value.reason == "unreachable"
