"""Bad input never breaks the kit: hypothesis-made HTTP bodies, single and in batches.

Each body is judged on its answer (never a 5xx; an invalid body is REJECTED with the reason it
deserves, a valid one is ACCEPTED) and then audited on the backend (every rejection is a
quarantined record with its reason and exact bytes, every acceptance is indexed).
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from pik.http import create_app
from pik.kit import Kit, build_kit
from pik.settings import Settings
from schemas.envelope import Reason, Rejection, parse_body
from tests.conftest import fresh_settings
from tests.reliability.bad_input import fuzz_http
from tests.reliability.conftest import CheckFigures

pytestmark = pytest.mark.reliability

SMALL_LIMITS = {"max_event_bytes": 32 * 1024, "max_body_bytes": 256 * 1024}


@pytest.fixture
def small_kit(settings: Settings) -> Kit:
    """A kit whose size limits are small, so oversized bodies are cheap to send."""
    built = build_kit(fresh_settings(settings.endpoint_url or "", **SMALL_LIMITS))
    built.bootstrap().run(demo_stream=False)
    return built


def test_fuzzed_bodies_are_quarantined_or_indexed_never_a_5xx(
    small_kit: Kit, check_figures: CheckFigures
) -> None:
    figures = fuzz_http(small_kit, examples=25, batch_examples=12)
    check_figures(figures)
    assert figures.tried >= 300, figures.to_json()


NUMERIC_TIMES = ["1735430399", "1735430399000", "1735430399.5"]


@pytest.mark.parametrize("when", NUMERIC_TIMES)
def test_a_numeric_string_is_not_an_event_time(when: str) -> None:
    body = {"source": "s", "event_type": "t", "entity_id": "e", "event_time": when, "payload": {}}
    parsed = parse_body(json.dumps(body).encode())
    assert isinstance(parsed, Rejection) and parsed.reason is Reason.INVALID_TIME


LONGEST_PAIRS = [
    ("é" * 128, "é" * 128),  # the longest source and event type the contract allows
    ("\x01" * 128, "\x01" * 128),  # control characters: JSON escapes them to 6 bytes each
]


@pytest.mark.parametrize(("source", "event_type"), LONGEST_PAIRS)
def test_the_longest_allowed_source_and_type_are_ingested(
    kit: Kit, source: str, event_type: str
) -> None:
    app = create_app(kit)
    body = {
        "source": source,
        "event_type": event_type,
        "entity_id": "e",
        "event_time": "2025-12-28T10:00:00Z",
        "payload": {},
    }
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            answer = client.post("/ingest", content=json.dumps(body).encode())
    finally:
        app.state.committer.close()
    assert answer.status_code == 200, answer.text
