"""The HTTP API over a real socket (uvicorn, as `pik serve` runs it): a client trickling its body
gets 408 in bounded time, and one that hangs up mid-body is one log line, not a traceback."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from infra.clock import FixedClock
from pik.http import create_app
from pik.kit import build_kit
from pik.settings import Settings
from tests.e2e.conftest import free_port


@pytest.fixture
def port(settings: Settings, clock: FixedClock) -> Iterator[int]:
    kit = build_kit(settings.model_copy(update={"body_timeout_s": 0.5}), clock=clock)
    kit.bootstrap().run(demo_stream=False)
    app = create_app(kit)
    chosen = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=chosen, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield chosen
    server.should_exit = True
    thread.join(10)
    app.state.committer.close()


def _head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("path", ["/ingest", "/ingest/batch"])
def test_a_trickled_body_is_408_within_the_body_timeout(port: int, path: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_head(path, 100_000) + b'{"source": ')
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"reason":"body_timeout"' in answer.replace(b" ", b"")
    assert waited < 5


def test_a_client_hanging_up_mid_body_is_one_line_not_a_traceback(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_head("/ingest/batch", 5_000) + b"[{")
        time.sleep(0.1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(
        "disconnected" in r.getMessage() for r in caplog.records
    ):
        time.sleep(0.05)
    assert [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
