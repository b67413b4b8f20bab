"""The HTTP API (contract in ARCHITECTURE.md): ingest, events, health, metrics, OpenAPI.

Bodies are read as bytes, never trusted: anything that is not a valid event becomes a
``REJECTED`` answer (422, or 413 for an oversized body) *and* a quarantined record. Backend
trouble answers 503 with a JSON reason; no input can produce a 5xx.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from consumers.group_commit import GroupCommitter
from consumers.ingest import IngestResult, Submission
from infra.errors import BackendError, KitError, NotFound
from pik.explain import explain
from pik.http.replay import replay_router
from pik.http.report import report_router
from pik.kit import Kit
from schemas.codec import Provenance
from schemas.envelope import Event, Reason, Rejection, Status, parse_body

EVENT_ID = re.compile(r"^[0-9a-f]{64}$")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
OPEN_ROUTES = {"/healthz"}

log = logging.getLogger(__name__)
JSON_WHITESPACE = " \t\r\n"

_EVENT_SCHEMA = Event.model_json_schema()


def _error(status: int, reason: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": "ERROR", "reason": reason, "detail": detail, **extra}, status)


def _request_id(request: Request) -> tuple[str, bool]:
    """The request's id, and whether the client chose it (then a retry of this request carries
    it again, and its deliveries may have been ingested before)."""
    given = request.headers.get("x-request-id", "")
    return (given, True) if REQUEST_ID.match(given) else (uuid.uuid4().hex, False)


class BodyTimeout(KitError):
    """The client did not send its whole body in time (answered 408, nothing was accepted)."""


async def _read_limited(request: Request, limit: int, timeout_s: float) -> tuple[bytes, bool]:
    """The body, up to ``limit`` bytes; True when there was more (the rest is not read). A body
    not received within ``timeout_s`` (a client trickling bytes) raises ``BodyTimeout``."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_body(request, limit)
    except TimeoutError:
        raise BodyTimeout(f"the body did not arrive within {timeout_s:g} s") from None


async def _read_body(request: Request, limit: int) -> tuple[bytes, bool]:
    declared = request.headers.get("content-length", "")
    chunks: list[bytes] = []
    size = 0
    if declared.isdigit() and int(declared) > limit:
        async for chunk in request.stream():
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                break
        return b"".join(chunks)[:limit], True
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


def split_json_array(text: str) -> list[str] | None:
    """The exact text of each element of a top-level JSON array (None if it is not one)."""
    decoder = json.JSONDecoder()
    if not text.strip(JSON_WHITESPACE).startswith("["):
        return None
    pos = text.index("[") + 1
    parts: list[str] = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos < len(text) and text[pos] == "]" and not parts:
            return [] if not text[pos + 1 :].strip(JSON_WHITESPACE) else None
        try:
            _, end = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):
            return None
        parts.append(text[pos:end])
        pos = end
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        if pos < len(text) and text[pos] == "]" and not text[pos + 1 :].strip(JSON_WHITESPACE):
            return parts
        return None


def _body_answer(result: IngestResult) -> JSONResponse:
    code = 422 if result.status is Status.REJECTED else 200
    return JSONResponse(result.to_json(), code)


class HealthSource(Protocol):
    """What else runs in this process (``pik up``'s supervised taps): state by component."""

    def states(self) -> dict[str, str]: ...


def create_app(
    kit: Kit, committer: GroupCommitter | None = None, health: HealthSource | None = None
) -> FastAPI:
    committer = committer or GroupCommitter(kit.sink)
    settings = kit.settings
    token = settings.api_token.get_secret_value() if settings.api_token else None
    app = FastAPI(
        title="Pipeline Investigation Kit",
        version="0.1.0",
        description="Ingest events; every event, good, duplicate or bad, is archived and indexed.",
    )
    app.state.committer = committer
    lineage = kit.lineage()

    @app.middleware("http")
    async def authorize(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if token and request.url.path not in OPEN_ROUTES:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            # RFC 7235: the auth scheme is case-insensitive.
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.encode(), token.encode()
            ):
                return _error(401, "unauthorized", "missing or wrong bearer token")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", str(exc.errors()[:3]))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown routes and wrong methods answer the documented shape, not FastAPI's default.
        reasons = {404: "not_found", 405: "method_not_allowed"}
        detail = {
            404: f"no route {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}",
        }.get(exc.status_code, str(exc.detail))
        answer = _error(exc.status_code, reasons.get(exc.status_code, "error"), detail)
        for name, value in (exc.headers or {}).items():
            answer.headers[name] = value
        return answer

    @app.exception_handler(BodyTimeout)
    async def body_timeout(_: Request, exc: BodyTimeout) -> JSONResponse:
        answer = _error(408, "body_timeout", str(exc))
        answer.headers["connection"] = "close"
        return answer

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, _: ClientDisconnect) -> Response:
        # Nothing was accepted and nobody reads the answer: one line, not a traceback.
        log.info("client disconnected before its body arrived", extra={"path": request.url.path})
        return Response(status_code=499)

    @app.exception_handler(BackendError)
    async def backend_down(_: Request, exc: BackendError) -> JSONResponse:
        return _error(503, "backend_unavailable", str(exc))

    @app.exception_handler(KitError)
    async def kit_error(_: Request, exc: KitError) -> JSONResponse:
        return _error(400, "error", str(exc))

    async def ingest_submissions(subs: list[Submission]) -> list[IngestResult]:
        return await run_in_threadpool(committer.submit, subs)

    @app.post(
        "/ingest",
        summary="Ingest one event",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _EVENT_SCHEMA}},
            }
        },
        responses={
            200: {"description": "ACCEPTED or DUPLICATE, with event_id and ingest_lag_ms"},
            413: {"description": "REJECTED: body over the size limit (quarantined)"},
            422: {"description": "REJECTED with reason and detail (quarantined)"},
        },
    )
    async def ingest(request: Request) -> JSONResponse:
        request_id, retry = _request_id(request)
        raw, too_large = await _read_limited(
            request, settings.max_event_bytes, settings.body_timeout_s
        )
        occurrence = _occurrence(request_id, raw)
        provenance = Provenance(
            occurrence_id=f"{occurrence}:0", origin="http", request_id=request_id
        )
        if too_large:
            parsed: Event | Rejection = Rejection(
                Reason.TOO_LARGE, f"body over the limit of {settings.max_event_bytes} bytes"
            )
        else:
            parsed = parse_body(raw, settings.max_event_bytes)
        submission = Submission(raw, provenance, parsed, "0", maybe_redelivered=retry)
        [result] = await ingest_submissions([submission])
        answer = _body_answer(result)
        if too_large:
            answer.status_code = 413
        answer.headers["x-request-id"] = request_id
        return answer

    @app.post(
        "/ingest/batch",
        summary="Ingest many events (JSON array or NDJSON); per-item results in order",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "array", "items": _EVENT_SCHEMA}},
                    "application/x-ndjson": {"schema": {"type": "string"}},
                },
            }
        },
    )
    async def ingest_batch(request: Request) -> JSONResponse:
        request_id, retry = _request_id(request)
        raw, too_large = await _read_limited(
            request, settings.max_body_bytes, settings.body_timeout_s
        )
        occurrence = _occurrence(request_id, raw)
        if too_large:
            prov = Provenance(f"{occurrence}:body", "http", request_id=request_id)
            rejection = Rejection(
                Reason.TOO_LARGE, f"body over the limit of {settings.max_body_bytes} bytes"
            )
            [result] = await run_in_threadpool(
                kit.sink.ingest,
                [Submission(raw, prov, rejection, "body", maybe_redelivered=retry)],
                label=request_id,
            )
            return JSONResponse(result.to_json(), 413)
        items = _split_batch(raw, settings.max_batch_items)
        if isinstance(items, Rejection):
            prov = Provenance(f"{occurrence}:body", "http", request_id=request_id)
            [result] = await run_in_threadpool(
                kit.sink.ingest,
                [Submission(raw, prov, items, "body", maybe_redelivered=retry)],
                label=request_id,
            )
            return JSONResponse(result.to_json(), 413 if items.reason is Reason.TOO_LARGE else 422)
        subs = [
            Submission(
                item,
                Provenance(f"{occurrence}:{i}", "http", request_id=request_id),
                parse_body(item, settings.max_event_bytes),
                str(i),
                maybe_redelivered=retry,
            )
            for i, item in enumerate(items)
        ]
        results = await run_in_threadpool(
            kit.sink.ingest, subs, label=f"http-{request_id}-{occurrence.rpartition(':')[2]}"
        )
        counts = {s.value.lower(): sum(r.status is s for r in results) for s in Status}
        return JSONResponse(
            {"request_id": request_id, **counts, "results": [r.to_json() for r in results]}
        )

    @app.get("/events/{event_id}", summary="Everything known about one event")
    async def get_event(event_id: str) -> JSONResponse:
        if not EVENT_ID.match(event_id):
            return _error(404, "not_found", "event ids are 64 lowercase hex digits")
        try:
            doc = await run_in_threadpool(explain, event_id, kit.index, kit.reader, lineage)
            return JSONResponse(doc)
        except NotFound as exc:
            return _error(404, "not_found", str(exc))

    app.include_router(replay_router(kit))
    app.include_router(report_router(kit))

    @app.get(
        "/healthz",
        summary="Health of each component: 200 when all are ok, 503 when degraded",
        responses={503: {"description": "degraded: a component is not ok"}},
    )
    async def healthz() -> JSONResponse:
        components = {"api": "ok", **(health.states() if health is not None else {})}
        ok = all(state == "ok" for state in components.values())
        doc = {"status": "ok" if ok else "degraded", "dry_run": kit.sink.dry_run}
        return JSONResponse({**doc, "components": components}, 200 if ok else 503)

    @app.get("/metrics", summary="Metrics in Prometheus text format")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(kit.metrics.prometheus(), media_type="text/plain; version=0.0.4")

    return app


def _occurrence(request_id: str, raw: bytes) -> str:
    """``http:<request id>:<digest>``, the occurrence id of a request's items (``:<item>``
    follows): the digest of the body makes it the delivery's own, so a client reusing a request
    id (or another client's) for other bytes is never taken for a redelivery of them, while an
    exact retry still is."""
    return f"http:{request_id}:{hashlib.sha256(raw).hexdigest()[:16]}"


def _split_batch(raw: bytes, max_items: int) -> list[bytes] | Rejection:
    """A batch body → the exact bytes of each item (JSON array or NDJSON); a body of more than
    ``max_items`` items is refused whole (``too_large``) before any item is parsed."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(Reason.INVALID_UTF8, f"body is not UTF-8 at byte {exc.start}")
    too_many = Rejection(
        Reason.TOO_LARGE, f"batch of more than {max_items} items: split it (PIK_MAX_BATCH_ITEMS)"
    )
    if text.lstrip(JSON_WHITESPACE).startswith("["):
        parts = split_json_array(text)
        if parts is None:
            return Rejection(Reason.INVALID_JSON, "body is not a valid JSON array")
        return too_many if len(parts) > max_items else [p.encode("utf-8") for p in parts]
    lines: list[bytes] = []
    for line in text.split("\n"):
        if line.strip():
            if len(lines) == max_items:
                return too_many
            lines.append(line.rstrip("\r").encode("utf-8"))
    if not lines:
        return Rejection(Reason.INVALID_JSON, "empty batch: send a JSON array or NDJSON lines")
    return lines
