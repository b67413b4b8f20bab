"""HTTP routes for replay: ``POST /replay``, ``GET /replays``, ``GET /replays/{id}``,
``POST /replays/{id}/cancel`` (served by ``pik serve`` and, on API Gateway, by ``pik.lambdas.api``).

A replay of at most ``SYNC_MAX_MESSAGES`` messages (and every dry run) is planned and sent inside
the request: the answer (200) is the final job. A bigger one is recorded at once and answered
with 202 and the job (``status`` ``PLANNED``); a background thread plans the rest and sends it,
and ``GET /replays/{id}`` follows it. On Lambda (Mangum puts the invocation context in the
ASGI scope) nothing may outlive the invocation, so a big replay runs inside it until the time
budget is nearly spent, then stops as ``FAILED`` ("interrupted"), resumable from its cursor.

Every refusal is a 4xx JSON ``{"status": "ERROR", "reason", "detail"}``; backend trouble is 503.
File targets are refused over HTTP (they would write on the server's disk).
"""

from __future__ import annotations

import atexit
import json
import logging
import re
import threading
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from infra.errors import BackendError, KitError, NotFound
from infra.replay_jobs import JobConflict, ReplayJob
from infra.targets import InvalidTarget
from pik.kit import Kit
from producers.replay import (
    REPLAY_ID,
    SYNC_MAX_MESSAGES,
    InvalidReplayRequest,
    ReplayService,
    Started,
    job_json,
    parse_request,
)

__all__ = ["replay_router"]

log = logging.getLogger(__name__)

REQUESTER = re.compile(r"^[\w.@:+/ -]{1,128}$")
MAX_REQUEST_BYTES = 64 * 1024
MAX_LIST = 100
LAMBDA_RESERVE_MS = 15_000  # stop a replay this long before the invocation's deadline
SHUTDOWN_WAIT_S = 10.0


def _error(status: int, reason: str, detail: str) -> JSONResponse:
    return JSONResponse({"status": "ERROR", "reason": reason, "detail": detail}, status)


def _kit_error(exc: KitError) -> JSONResponse:
    """Translate the kit's errors: the caller's fault is 4xx, the backend's 503."""
    if isinstance(exc, InvalidReplayRequest):
        return _error(422, exc.reason, exc.detail)
    if isinstance(exc, InvalidTarget):
        return _error(422, "invalid_target", str(exc))
    if isinstance(exc, NotFound):
        return _error(404, "not_found", str(exc))
    if isinstance(exc, JobConflict):
        return _error(409, "conflict", str(exc))
    if isinstance(exc, BackendError):
        return _error(503, "backend_unavailable", str(exc))
    return _error(400, "error", str(exc))


class _Background:
    """Background replays on daemon threads. At interpreter exit they are asked to stop, and
    given a few seconds to record where they are (FAILED "interrupted", resumable)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        atexit.register(self.stop)

    def submit(self, replay_id: str, work: Callable[[Callable[[], bool]], ReplayJob]) -> None:
        def run() -> None:
            try:
                work(self._stop.is_set)
            except Exception:  # the job records its own failures; this is the last net
                log.exception("background replay failed", extra={"replay_id": replay_id})
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"replay-{replay_id}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def stop(self, timeout: float = SHUTDOWN_WAIT_S) -> None:
        self._stop.set()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout / max(len(threads), 1))


async def _read_bounded(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is over ``limit`` bytes: a declared Content-Length over it is
    refused unread, and a chunked body is read only until it passes the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _requester(request: Request) -> str:
    given = request.headers.get("x-requester", "").strip()
    if given and REQUESTER.match(given):
        return given
    client = request.client.host if request.client else "unknown"
    return f"http:{client}"


def _lambda_deadline(request: Request) -> Callable[[], bool] | None:
    context = request.scope.get("aws.context")
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return lambda: bool(remaining() < LAMBDA_RESERVE_MS)


def replay_router(
    kit: Kit, *, service: ReplayService | None = None, sync_max: int = SYNC_MAX_MESSAGES
) -> APIRouter:
    replays = service or kit.replay_service(allow_files=False)
    background = _Background()
    router = APIRouter(tags=["replay"])

    @router.post(
        "/replay",
        summary="Start a replay (dry run: plan only)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
        responses={
            200: {"description": "The finished job (or the dry run's plan)"},
            202: {"description": "A big replay: the job, running in the background"},
            422: {"description": "Invalid request: reason and detail"},
        },
    )
    async def post_replay(request: Request) -> JSONResponse:
        raw = await _read_bounded(request, MAX_REQUEST_BYTES)
        if raw is None:
            return _error(413, "too_large", f"a replay request is at most {MAX_REQUEST_BYTES} B")
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return _error(400, "invalid_json", "the body is not valid JSON")
        try:
            replay = parse_request(data)
            started: Started = await run_in_threadpool(
                replays.start, replay, requester=_requester(request), sync_max=sync_max
            )
        except KitError as exc:
            return _kit_error(exc)
        if started.background is None:
            return JSONResponse(job_json(started.job, dry_run=started.dry_run))
        deadline = _lambda_deadline(request)
        if deadline is not None:  # on Lambda: in this invocation, within its time budget
            job = await run_in_threadpool(started.background, deadline)
            return JSONResponse(job_json(job))
        background.submit(started.job.replay_id, started.background)
        return JSONResponse(job_json(started.job), 202)

    @router.get("/replays", summary="Recent replay jobs, newest first")
    async def list_replays(limit: int = 20) -> JSONResponse:
        limit = max(1, min(limit, MAX_LIST))
        try:
            jobs = await run_in_threadpool(replays.recent, limit)
        except KitError as exc:
            return _kit_error(exc)
        return JSONResponse({"replays": [job_json(j) for j in jobs]})

    @router.get("/replays/{replay_id}", summary="One replay job")
    async def get_replay(replay_id: str) -> JSONResponse:
        if not REPLAY_ID.match(replay_id):
            return _error(404, "not_found", f"no replay {replay_id[:140]!r}")
        try:
            job = await run_in_threadpool(replays.get, replay_id)
        except KitError as exc:
            return _kit_error(exc)
        return JSONResponse(job_json(job))

    @router.post("/replays/{replay_id}/cancel", summary="Cancel a replay job")
    async def cancel_replay(replay_id: str) -> JSONResponse:
        if not REPLAY_ID.match(replay_id):
            return _error(404, "not_found", f"no replay {replay_id[:140]!r}")
        try:
            job = await run_in_threadpool(replays.cancel, replay_id)
        except KitError as exc:
            return _kit_error(exc)
        return JSONResponse(job_json(job))

    return router
