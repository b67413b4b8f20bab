"""Scenario 5, security: the bearer token on every route but ``/healthz``, request size limits,
S3 keys that stay in their prefix whatever a producer sends, and no secret in the logs."""

from __future__ import annotations

import json
import re
import secrets
import signal
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from pik.http import OPEN_ROUTES, create_app
from pik.http.replay import MAX_REQUEST_BYTES
from pik.kit import Kit
from tests.reliability.bad_input import TRICKY_IDS
from tests.reliability.crash import free_port, kill_hard, wait_ready
from tests.reliability.support import (
    PIK,
    Figures,
    archived_records,
    env_for,
    kit_with,
    settings_for,
    timed,
)

KEY_SHAPE = re.compile(
    r"^(raw|quarantine)/source=[A-Za-z0-9_%-]+/event_type=[A-Za-z0-9_%-]+"
    r"/ingest_date=\d{4}-\d{2}-\d{2}/hour=\d{2}/[A-Za-z0-9_%-]+\.avro$"
)
S3_MAX_KEY_BYTES = 1024
SAMPLE_PARAMS = {"event_id": "0" * 64, "replay_id": "rp-0000000000000000"}


def routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path) of every route the app serves, included routers too (not hard-coded)."""

    def walk(items: list[Any]) -> Iterator[tuple[str, str]]:
        for route in items:
            original = getattr(route, "original_router", None)
            if original is not None:
                yield from walk(list(original.routes))
                continue
            for method in sorted(getattr(route, "methods", None) or ()):
                yield method, str(route.path)

    yield from walk(list(app.routes))


def _fill(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE_PARAMS.get(m.group(1), "x"), path)


def token_on_every_route(kit: Kit, token: str) -> Figures:
    """Without a token, with a wrong one, or a malformed header: 401 on every route but
    ``/healthz``, and nothing written; with the token: never 401."""
    figures = Figures("security: bearer token on every route")
    app = create_app(kit)
    found = sorted(set(routes(app)))
    documented = set(app.openapi()["paths"])
    missing = documented - {p for _, p in found}
    if missing:
        figures.fail(f"routes in /openapi.json not found by the walk: {sorted(missing)}")
    wrong_headers: list[dict[str, str]] = [
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": f"Bearer {token}x"},
        {"authorization": f"Bearer {token[:-1]}"},
        {"authorization": token},
        {"authorization": f"Basic {token}"},
        {"authorization": "Bearer "},
        {"authorization": f"Bearer  {token}"},
        {"x-api-key": token},
    ]
    body = b'{"source":"s","event_type":"t","entity_id":"e","event_time":"2025-01-01T00:00:00Z","payload":{}}'
    try:
        with timed(figures), TestClient(app, raise_server_exceptions=False) as client:
            for method, path in found:
                url = _fill(path)
                for headers in wrong_headers:
                    figures.tried += 1
                    answer = client.request(method, url, headers=headers, content=body)
                    expect_open = path in OPEN_ROUTES
                    if expect_open and answer.status_code == 401:
                        figures.fail(f"{method} {path} refused without a token")
                    elif not expect_open and answer.status_code != 401:
                        figures.fail(f"{method} {path} with {headers}: {answer.status_code}")
                    else:
                        figures.survived += 1
                figures.tried += 1
                answer = client.request(
                    method, url, headers={"authorization": f"Bearer {token}"}, content=body
                )
                if answer.status_code == 401 or answer.status_code >= 500:
                    figures.fail(f"{method} {path} with the token: {answer.status_code}")
                else:
                    figures.survived += 1
            # paths that might slip past an exact-match check
            for trick in ("/healthz/", "/HEALTHZ", "//ingest", "/healthz/../ingest", "/nope"):
                figures.tried += 1
                answer = client.post(trick, content=body)
                if answer.status_code in (200, 422):
                    figures.fail(f"POST {trick} without a token: {answer.status_code}")
                else:
                    figures.survived += 1
    finally:
        app.state.committer.close()
    written = [k for k, _, _ in archived_records(kit, "")]
    authorized_ingests = sum(1 for m, p in found if m == "POST" and p.startswith("/ingest"))
    if len(set(written)) > authorized_ingests:
        figures.lost += len(set(written)) - authorized_ingests
        figures.fail(f"{len(set(written))} archive files for {authorized_ingests} authorized posts")
    figures.notes["routes"] = [f"{m} {p}" for m, p in found]
    return figures


def size_limits(kit: Kit) -> Figures:
    """Bodies one byte over each limit, declared or chunked: 413, on every POST route."""
    figures = Figures("security: request size limits")
    app = create_app(kit)
    s = kit.settings
    cases = [
        ("/ingest", s.max_event_bytes),
        ("/ingest/batch", s.max_body_bytes),
        ("/replay", MAX_REQUEST_BYTES),
    ]
    try:
        with timed(figures), TestClient(app, raise_server_exceptions=False) as client:
            for path, limit in cases:
                data = b"[" + b" " * limit + b"]"
                for chunked in (False, True):
                    figures.tried += 1
                    content: Any = iter([data[i : i + 65536] for i in range(0, len(data), 65536)])
                    answer = client.post(path, content=content if chunked else data)
                    if answer.status_code != 413:
                        how = "chunked" if chunked else "declared"
                        figures.fail(f"{path}: {len(data)} B {how} answered {answer.status_code}")
                    else:
                        figures.survived += 1
    finally:
        app.state.committer.close()
    return figures


def keys_stay_in_prefix(kit: Kit, *, examples: int, seed_value: int = 9) -> Figures:
    """Fuzzed source / event type / entity ids: every archive key has the documented shape,
    one escaped segment per value (decoding back to it), and fits S3's 1,024 bytes."""
    figures = Figures("security: S3 keys stay in their prefix")
    app = create_app(kit)
    values = st.one_of(st.sampled_from(TRICKY_IDS), st.text(min_size=1, max_size=128))
    sent: list[dict[str, Any]] = []
    try:
        with timed(figures), TestClient(app, raise_server_exceptions=False) as client:

            @seed(seed_value)
            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(st.lists(st.tuples(values, values, values), min_size=1, max_size=20))
            def send(triples: list[tuple[str, str, str]]) -> None:
                lines = []
                for source, event_type, entity in triples:
                    doc = {
                        "source": source,
                        "event_type": event_type,
                        "entity_id": entity,
                        "event_time": "2025-12-28T10:00:00Z",
                        "payload": {"n": uuid.uuid4().hex},
                    }
                    lines.append(json.dumps(doc))
                    sent.append(doc)
                answer = client.post("/ingest/batch", content="\n".join(lines).encode())
                if answer.status_code >= 500:
                    figures.fail(
                        f"batch answered {answer.status_code}: {answer.text[:300]} "
                        f"for {json.dumps(triples)[:4000]}"
                    )

            send()
    finally:
        app.state.committer.close()
    records = archived_records(kit, "")
    keys = {key for key, _, _ in records}
    for key in keys:
        figures.tried += 1
        segments = key.split("/")
        if (
            not KEY_SHAPE.match(key)
            or len(key.encode()) > S3_MAX_KEY_BYTES
            or {".", ".."} & set(segments)
        ):
            figures.fail(f"key out of shape: {key[:200]}")
            continue
        figures.survived += 1
    for key, _, record in records:  # each value is one segment that decodes back to it
        source_segment = key.split("/")[1].removeprefix("source=")
        if record.source and len(source_segment) < 384 and unquote(source_segment) != record.source:
            figures.fail(f"source {record.source!r} is {source_segment!r} in {key[:120]}")
    figures.notes.update({"events": len(sent), "keys": len(keys)})
    return figures


def no_secret_in_logs(endpoint_url: str) -> Figures:
    """``pik serve`` with ``PIK_API_TOKEN`` and AWS keys set, logging at DEBUG, asked good and
    bad things with good and wrong tokens: neither the token, nor a wrong token a client sent,
    nor the AWS secret appears in anything it printed."""
    figures = Figures("security: no secret in logs")
    token = "pik-" + secrets.token_urlsafe(24)
    aws_secret = secrets.token_urlsafe(30)
    wrong = [token + "x", "wrong-" + secrets.token_urlsafe(12)]
    settings_ = settings_for(endpoint_url)
    kit_with(settings_).bootstrap().run(demo_stream=False)
    port = free_port()
    env = env_for(
        settings_,
        PIK_API_TOKEN=token,
        PIK_LOG_LEVEL="DEBUG",
        AWS_ACCESS_KEY_ID="AKIA" + secrets.token_hex(8).upper(),
        AWS_SECRET_ACCESS_KEY=aws_secret,
    )
    server = subprocess.Popen(
        [PIK, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    good = {"authorization": f"Bearer {token}"}
    event = {
        "source": "s",
        "event_type": "t",
        "entity_id": "e",
        "event_time": "2025-01-01T00:00:00Z",
    }
    with timed(figures):
        try:
            if not wait_ready(f"{base}/healthz", server):
                figures.fail("pik serve did not start")
            with httpx.Client(base_url=base, timeout=30) as client:
                calls: list[tuple[str, str, dict[str, str], bytes]] = [
                    ("POST", "/ingest", good, json.dumps({**event, "payload": {}}).encode()),
                    ("POST", "/ingest", good, b'{"broken'),
                    ("POST", "/ingest/batch", good, b'{"a":1}\n\xff'),
                    ("GET", "/events/" + "0" * 64, good, b""),
                    ("POST", "/replay", good, b'{"source": "s"}'),
                    ("GET", "/metrics", good, b""),
                    ("GET", "/report?source=s", good, b""),
                ] + [("POST", "/ingest", {"authorization": f"Bearer {w}"}, b"{}") for w in wrong]
                for method, path, headers, body in calls:
                    figures.tried += 1
                    answer = client.request(method, path, headers=headers, content=body)
                    if answer.status_code >= 500:
                        figures.fail(f"{method} {path}: {answer.status_code}")
                    else:
                        figures.survived += 1
        finally:
            server.send_signal(signal.SIGINT)
            try:
                out, err = server.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                kill_hard(server)
                out, err = server.communicate()
    printed = (out + err).decode("utf-8", "replace")
    for name, secret in [("API token", token), ("AWS secret key", aws_secret)] + [
        ("a wrong token a client sent", w) for w in wrong
    ]:
        figures.tried += 1
        if secret in printed:
            figures.lost += 1
            figures.fail(f"the {name} appears in the logs")
        else:
            figures.survived += 1
    figures.notes["log_lines"] = len(printed.splitlines())
    return figures
