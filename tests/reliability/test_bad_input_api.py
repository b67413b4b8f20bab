"""Bad input through the whole API and through the tap: schemathesis-made requests on every
operation of /openapi.json (valid and invalid by the schema), and corrupt KPL aggregates and
wrongly framed Avro records on Kinesis streams."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime

import httpx
import pytest

from consumers.ingest import Submission
from infra.local import EmbeddedAws
from pik.kit import Kit
from schemas.codec import Provenance
from schemas.envelope import parse_body
from tests.reliability.bad_input import schemathesis_run, tap_bad_records
from tests.reliability.conftest import CheckFigures
from tests.reliability.crash import free_port, kill_hard, wait_ready
from tests.reliability.support import PIK, env_for, kit_with, settings_for

pytestmark = pytest.mark.reliability


def test_schemathesis_finds_no_5xx(kit: Kit, check_figures: CheckFigures) -> None:
    check_figures(schemathesis_run(kit, examples_per_operation=8))


def test_corrupt_kpl_and_avro_records_are_quarantined_whole_with_a_reason(
    kit: Kit, check_figures: CheckFigures
) -> None:
    figures = tap_bad_records(kit, records=30)
    check_figures(figures)
    assert figures.notes["rejections_by_reason"], figures.to_json()


def test_report_refuses_a_window_it_cannot_answer_quickly(aws_server: EmbeddedAws) -> None:
    settings = settings_for(aws_server.endpoint_url)
    kit_with(settings).bootstrap().run(demo_stream=False)
    port = free_port()
    server = subprocess.Popen(
        [PIK, "serve", "--port", str(port)],
        env=env_for(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_ready(f"http://127.0.0.1:{port}/healthz", server)
        query = {"source": "s", "since": "0001-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/report", params=query, timeout=10)
        except httpx.ReadTimeout:
            pytest.fail("GET /report over 2,000 years was still computing after 10 s")
        assert answer.status_code == 400, answer.status_code
    finally:
        kill_hard(server)


def test_report_without_a_source_stays_quick_when_producers_made_many_sources(
    aws_server: EmbeddedAws,
) -> None:
    settings = settings_for(aws_server.endpoint_url)
    kit = kit_with(settings)
    kit.bootstrap().run(demo_stream=False)
    today = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    bodies = [
        json.dumps(
            {
                "source": f"src-{n}",
                "event_type": "t",
                "entity_id": "e",
                "event_time": today,
                "payload": {},
            }
        ).encode()
        for n in range(200)
    ]
    kit.sink.ingest(
        [
            Submission(b, Provenance(f"many:{i}", "http"), parse_body(b), str(i))
            for i, b in enumerate(bodies)
        ],
        label="many-sources",
    )
    port = free_port()
    server = subprocess.Popen(
        [PIK, "serve", "--port", str(port)],
        env=env_for(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_ready(f"http://127.0.0.1:{port}/healthz", server)
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/report", timeout=10)
        except httpx.ReadTimeout:
            pytest.fail("GET /report over 200 sources was still computing after 10 s")
        assert answer.status_code in (200, 400), answer.status_code
    finally:
        kill_hard(server)
