"""A small client of the replay HTTP API for ops scripts (standard library only)::

    from producers.replay import ReplayClient

    client = ReplayClient("http://127.0.0.1:8080", token=None, requester="oncall-bot")
    job = client.replay(entity_id="user_123", start_time="2025-12-28T00:00:00Z",
                        end_time="2025-12-29T00:00:00Z", dry_run=True)
    job = client.wait(job["replay_id"])  # for a replay that went to the background

The parameters are the request's (ARCHITECTURE.md, "Replay"). A refused request raises
``ReplayClientError`` with the HTTP status, the reason code and the detail.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any
from urllib.parse import quote

from infra.errors import KitError

__all__ = ["ReplayClient", "ReplayClientError"]

FINAL_STATUSES = frozenset({"COMPLETED", "CANCELLED", "FAILED"})


class ReplayClientError(KitError):
    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail


class ReplayClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        requester: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._requester = requester
        self._timeout = timeout

    def replay(
        self,
        *,
        start_time: str | datetime,
        end_time: str | datetime,
        entity_id: str | None = None,
        source: str | None = None,
        event_type: str | None = None,
        limit: int | None = None,
        include_duplicates: bool = False,
        include_rejected: bool = False,
        target: str | None = None,
        dry_run: bool = False,
        rate_limit: float | None = None,
        min_lag_ms: int | None = None,
        with_payload: bool = False,
    ) -> dict[str, Any]:
        """Start a replay (``POST /replay``); the answer is the job (final for a small one)."""
        body: dict[str, Any] = {
            "entity_id": entity_id,
            "source": source,
            "event_type": event_type,
            "start_time": _text(start_time),
            "end_time": _text(end_time),
            "limit": limit,
            "include_duplicates": include_duplicates,
            "include_rejected": include_rejected,
            "target": target,
            "dry_run": dry_run,
            "rate_limit": rate_limit,
            "min_lag_ms": min_lag_ms,
            "with_payload": with_payload,
        }
        return self._call("POST", "/replay", {k: v for k, v in body.items() if v is not None})

    def get(self, replay_id: str) -> dict[str, Any]:
        return self._call("GET", f"/replays/{quote(replay_id, safe='')}")

    def wait(
        self, replay_id: str, *, poll_seconds: float = 1.0, timeout: float | None = None
    ) -> dict[str, Any]:
        """Poll until the job is COMPLETED, CANCELLED or FAILED (or ``timeout`` passes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(replay_id)
            if job["status"] in FINAL_STATUSES:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                return job
            time.sleep(poll_seconds)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if self._requester:
            headers["X-Requester"] = self._requester
        request = urllib.request.Request(
            self.base_url + path, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as answer:
                doc: dict[str, Any] = json.loads(answer.read())
                return doc
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read())
            except ValueError:
                error = {}
            raise ReplayClientError(
                exc.code, str(error.get("reason", "http_error")), str(error.get("detail", exc))
            ) from exc
        except urllib.error.URLError as exc:
            raise ReplayClientError(0, "unreachable", str(exc.reason)) from exc


def _text(value: str | datetime) -> str:
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value
