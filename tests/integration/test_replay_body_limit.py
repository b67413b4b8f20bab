"""``POST /replay`` refuses a body over its 64 KiB limit without reading it whole: a declared
Content-Length over the limit is refused unread, a chunked body is read only until it passes the
limit (413 with a JSON reason, as ``/ingest`` does). Driven at the ASGI level, so the test sees
how many bytes the app pulled from the client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from pik.http import create_app
from pik.http.replay import MAX_REQUEST_BYTES
from pik.kit import Kit

CHUNK = 16 * 1024
HUGE = 4 * 1024 * 1024  # what a client offers: far over the limit


@dataclass
class Exchange:
    """One request at the ASGI level: the body is handed out chunk by chunk, on demand."""

    headers: list[tuple[bytes, bytes]]
    body: bytes
    pulled: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)

    async def receive(self) -> dict[str, Any]:
        chunk = self.body[self.pulled : self.pulled + CHUNK]
        self.pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": self.pulled < len(self.body)}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(dict(message))

    @property
    def status(self) -> int:
        return int(next(m["status"] for m in self.sent if m["type"] == "http.response.start"))

    @property
    def answer(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(
            b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")
        )
        return doc


def post_replay(kit: Kit, exchange: Exchange) -> Exchange:
    app = create_app(kit)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/replay",
        "raw_path": b"/replay",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), *exchange.headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    try:
        asyncio.run(app(scope, exchange.receive, exchange.send))
    finally:
        app.state.committer.close()
    return exchange


def oversized() -> bytes:
    return b'{"entity_id": "' + b"x" * HUGE + b'"}'


def test_a_chunked_body_over_the_limit_is_refused_before_it_is_read_whole(kit: Kit) -> None:
    body = oversized()
    done = post_replay(kit, Exchange([(b"transfer-encoding", b"chunked")], body))
    assert done.status == 413
    assert done.answer["reason"] == "too_large"
    assert done.pulled <= MAX_REQUEST_BYTES + CHUNK < len(body)


def test_a_declared_length_over_the_limit_is_refused_unread(kit: Kit) -> None:
    body = oversized()
    done = post_replay(kit, Exchange([(b"content-length", str(len(body)).encode())], body))
    assert done.status == 413
    assert done.answer == {
        "status": "ERROR",
        "reason": "too_large",
        "detail": f"a replay request is at most {MAX_REQUEST_BYTES} B",
    }
    assert done.pulled == 0


def test_a_body_at_the_limit_is_read_and_parsed(kit: Kit) -> None:
    body = b"[" + b" " * (MAX_REQUEST_BYTES - 2) + b"]"
    done = post_replay(kit, Exchange([(b"transfer-encoding", b"chunked")], body))
    assert done.pulled == len(body)
    assert done.status == 422, done.answer  # read whole, parsed: not an object
