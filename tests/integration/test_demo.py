"""``pik demo`` on the embedded AWS: the scripted incident is sent over HTTP, and each problem
planted in it must be found again by the investigation code (gaps, lag, audit, explain); the
report is written. A fixed clock makes the timeline the same on every run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from infra.clock import FixedClock
from infra.local import EmbeddedAws
from pik.demo import run_demo
from pik.demo_incident import CHECKOUT, MOBILE, OFFLINE_PHONES, STORM_PHONE, STORM_RETRIES
from tests.conftest import fresh_settings

NOW = datetime(2025, 12, 29, 10, 17, tzinfo=UTC)  # the incident: 2025-12-26T10 to 2025-12-29T10
FLAGS = "--since 2025-12-26T10:00:00Z --until 2025-12-29T10:00:00Z"
GAP = {"start": "2025-12-27T16:00:00Z", "end": "2025-12-27T22:00:00Z", "kind": "missing"}
STORM_HOUR = "2025-12-28T12:00:00Z"
REJECTIONS = {"invalid_time": 6, "missing_field": 1, "payload_not_object": 1}


@pytest.fixture(scope="module")
def played(
    aws_server: EmbeddedAws, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], str, Path]:
    """One run shared by the tests below (the demo takes seconds)."""
    out = tmp_path_factory.mktemp("demo") / "report.html"
    console = Console(record=True, width=240)
    result = run_demo(
        fresh_settings(aws_server.endpoint_url), console, out=out, clock=FixedClock(NOW)
    )
    return result, console.export_text(), out


def test_every_planted_problem_is_found(played: tuple[dict[str, Any], str, Path]) -> None:
    result, _, _ = played
    assert result["checks"] == dict.fromkeys(
        ("missing_window", "late_data", "duplicate_storm", "rejections", "explain"), True
    )
    assert result["ok"] is True
    planted, found = result["planted"], result["found"]

    gaps = found["gaps"]
    assert [{k: g[k] for k in GAP} for g in gaps[CHECKOUT]] == [GAP]
    assert gaps[CHECKOUT][0]["count"] == 0
    assert gaps[MOBILE] == []
    assert (planted["gap"]["since"], planted["gap"]["until"]) == (GAP["start"], GAP["end"])

    lag = found["lag"]
    assert lag["late_count"] == planted["late"]["count"] == 30
    assert lag["late_entities"] == sorted(OFFLINE_PHONES)

    audit = found["audit"]
    [storm] = audit["storms"]
    assert (storm["start"], storm["duplicates"]) == (STORM_HOUR, planted["storm"]["duplicates"])
    assert audit["top_entities"][0]["entity_id"] == STORM_PHONE == planted["storm"]["entity_id"]
    assert audit["top_entities"][0]["duplicate"] == storm["duplicates"] == 90
    assert audit["rejections"] == planted["rejections"] == REJECTIONS

    explained = found["explain"]
    assert explained["event_id"] == storm["top_events"][0]["event_id"]
    assert (explained["entity_id"], explained["duplicates"]) == (STORM_PHONE, STORM_RETRIES)


def test_everything_sent_is_accounted_for(played: tuple[dict[str, Any], str, Path]) -> None:
    result, _, _ = played
    json.dumps(result)  # `pik demo --json` prints it as it is
    seeded, totals = result["seeded"], result["found"]["audit"]["totals"]
    assert seeded["events"] == seeded["accepted"] + seeded["duplicate"] + seeded["rejected"]
    assert (totals["accepted"], totals["duplicate"], totals["rejected"]) == (
        seeded["accepted"],
        seeded["duplicate"],
        seeded["rejected"],
    )
    assert seeded["metrics"]["RejectedCount"] == seeded["rejected"] == 8


def test_the_story_shows_each_command_and_the_report_is_written(
    played: tuple[dict[str, Any], str, Path],
) -> None:
    result, text, out = played
    sources = f"--source {CHECKOUT} --source {MOBILE}"
    for command in (
        f"pik gaps {sources} {FLAGS}",
        f"pik lag {sources} {FLAGS} --latest 50",
        f"pik audit {sources} {FLAGS}",
        f"pik explain {result['found']['explain']['event_id']}",
        f"pik report {sources} {FLAGS} --out {out}",
    ):
        assert f"$ {command}" in text
    assert text.count("✓") == 5 and "✗" not in text
    assert result["report"]["path"] == str(out.resolve())
    html = out.read_text(encoding="utf-8")
    assert html.lower().startswith("<!doctype html>")
    assert "<svg" in html and CHECKOUT in html and MOBILE in html
