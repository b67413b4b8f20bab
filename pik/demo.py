"""``pik demo``: a scripted first incident, end to end over real HTTP on the configured backend.

It starts the HTTP API on a free loopback port, sends the user guide's event (ACCEPTED), sends
it again (DUPLICATE), sends a late event and three bad ones (REJECTED, quarantined), a batch of
events, and then explains the first event from the index and the archive.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn
from rich.console import Console

from pik.explain import explain
from pik.http import create_app
from pik.kit import build_kit
from pik.render import render_explain
from pik.settings import Settings

GUIDE_EVENT = {
    "source": "demo",
    "event_type": "heartbeat",
    "entity_id": "user_123",
    "event_time": "2025-12-28T23:59:59Z",
    "payload": {"steps": 10},
}
BAD_BODIES = [
    b'{"source":"demo","event_type":"heartbeat"',  # truncated JSON
    b'{"source":"demo","event_type":"heartbeat","entity_id":"user_123","payload":{}}',
    b'{"source":"demo","event_type":"heartbeat","entity_id":"u","event_time":"yesterday",'
    b'"payload":{}}',
]
BATCH_SIZE = 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class _Server:
    def __init__(self, settings: Settings) -> None:
        self.kit = build_kit(settings)
        self.app = create_app(self.kit)
        self.port = _free_port()
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_config=None, access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the demo HTTP server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.app.state.committer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def run_demo(settings: Settings, console: Console | None) -> dict[str, Any]:
    def say(text: str) -> None:
        if console:
            console.print(text, highlight=False)

    build_kit(settings).bootstrap().run()
    steps: list[dict[str, Any]] = []
    with _Server(settings) as server:
        api = server.url
        say(f"[bold]1. The user guide's event[/bold]  POST {api}/ingest")
        body = json.dumps(GUIDE_EVENT).encode()
        for label in ("first send", "same event again"):
            code, answer = _post(f"{api}/ingest", body)
            steps.append({"step": label, "http": code, **answer})
            say(f"   {label:18} → {code} {answer['status']}  event_id={answer['event_id'][:16]}…")
        first_id = steps[0]["event_id"]

        say("[bold]2. A late event[/bold] (event time three days ago)")
        late = {**GUIDE_EVENT, "event_time": (datetime.now(UTC) - timedelta(days=3)).isoformat()}
        late["payload"] = {"steps": 42}
        code, answer = _post(f"{api}/ingest", json.dumps(late).encode())
        steps.append({"step": "late event", "http": code, **answer})
        say(f"   → {code} {answer['status']}  lag {answer['ingest_lag_ms']:,} ms")

        say("[bold]3. Bad events[/bold] are answered 422 and quarantined, never dropped")
        for raw in BAD_BODIES:
            code, answer = _post(f"{api}/ingest", raw)
            steps.append({"step": "bad event", "http": code, **answer})
            say(f"   → {code} {answer['status']} {answer['reason']}: {answer['detail'][:60]}")

        say(f"[bold]4. A batch[/bold] of {BATCH_SIZE} events (NDJSON) in one request")
        lines = [
            json.dumps(
                {
                    **GUIDE_EVENT,
                    "entity_id": f"user_{i % 7}",
                    "event_time": f"2025-12-28T{i % 24:02d}:00:00Z",
                    "payload": {"steps": i},
                }
            )
            for i in range(BATCH_SIZE)
        ]
        code, answer = _post(
            f"{api}/ingest/batch", "\n".join(lines).encode(), "application/x-ndjson"
        )
        counts = {k: answer[k] for k in ("accepted", "duplicate", "rejected")}
        steps.append({"step": "batch", "http": code, **counts})
        say(f"   → {code} {counts}")

        say("[bold]5. What happened to the first event?[/bold]  pik explain " + first_id)
        story = explain(first_id, server.kit.index, server.kit.reader)
        if console:
            render_explain(console, story)
        metrics = {
            name: server.kit.metrics.counter(name)
            for name in ("IngestCount", "DuplicateCount", "RejectedCount")
        }
    say(f"[bold]metrics[/bold] {metrics}")
    return {"steps": steps, "explain": story, "metrics": metrics}
