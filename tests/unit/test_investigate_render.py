"""What a person sees: the terminal renderings, the HTML report (self-contained, with its
charts), and ``explain`` with every delivery of an event."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest
from rich.console import Console

from infra.archive import ArchiveReader
from infra.index_queries import MemoryIndexQueries
from pik.explain import explain
from pik.investigate import InvestigationReport, Investigator
from pik.investigate.console import render_audit, render_gaps, render_lag
from pik.investigate.report_html import render_report
from pik.investigate.svg import column_chart, row_chart
from pik.render import human_ms, render_explain
from tests.unit.test_investigate_data import (
    SINCE,
    SOURCE,
    STORM_COPIES,
    UNTIL,
    MemoryIncident,
    memory_incident,
)


@pytest.fixture(scope="module")
def seeded() -> MemoryIncident:
    return memory_incident()


@pytest.fixture(scope="module")
def report(seeded: MemoryIncident) -> InvestigationReport:
    inv = Investigator(MemoryIndexQueries(seeded.index), seeded.clock)
    return inv.report(inv.window(SINCE, UNTIL), sources=[SOURCE])


def text_of(render: Any, doc: Any) -> str:
    console = Console(record=True, width=200)
    render(console, doc)
    return console.export_text()


@pytest.mark.parametrize(
    ("ms", "text"),
    [(850, "850 ms"), (12_300, "12.3 s"), (3_600_000, "1.0 h"), (125_640_000, "34.9 h"),
     (3 * 86_400_000, "3.0 d"), (-1_500, "-1.5 s"), (None, "")],
)  # fmt: skip
def test_durations_read_the_way_people_say_them(ms: int | None, text: str) -> None:
    assert human_ms(ms) == text


def test_terminal_renderings_name_what_was_found(report: InvestigationReport) -> None:
    audit = text_of(render_audit, report.audit)
    assert "337 deliveries" in audit and "invalid_time" in audit
    assert "duplicate storm 2025-12-28T14:00:00Z" in audit and "cust-storm" in audit
    gaps = text_of(render_gaps, report.gaps)
    assert "missing 2025-12-28T05:00:00Z → 2025-12-28T06:00:00Z" in gaps
    assert "orders / paid" in gaps and "no gaps" in gaps
    lag = text_of(render_lag, report.lag)
    assert "34.9 h" in lag and "latest arrivals" in lag and "cust-late-0" in lag


def test_the_html_report_is_one_self_contained_page_with_its_charts(
    report: InvestigationReport,
) -> None:
    html = render_report(report)
    assert html.startswith("<!doctype html>")
    assert html.count("<svg") >= 6  # 3 event series, 2 lag histograms, reasons, duplicates
    for section in ("id=events", "id=lag", "id=rejections", "id=duplicates"):
        assert section in html
    assert 'class="mark-missing"' in html and 'class="mark-storm"' in html
    assert "<script" not in html.lower()
    refs = re.findall(
        r"""(?:src|href)\s*=|url\(|@import|https?://(?!www\.w3\.org/2000/svg)""", html
    )
    assert refs == []  # nothing is fetched: no CDN, no fonts, no images


def test_the_report_escapes_what_producers_sent(seeded: MemoryIncident) -> None:
    inv = Investigator(MemoryIndexQueries(seeded.index), seeded.clock)
    doc = inv.report(inv.window(SINCE, UNTIL), sources=["<script>alert(1)</script>"])
    html = render_report(doc)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_charts_draw_with_no_data() -> None:
    assert column_chart([], [], title="nothing").startswith("<svg")
    assert "</svg>" in row_chart([], title="nothing")


def test_explain_lists_every_delivery_with_its_provenance(seeded: MemoryIncident) -> None:
    reader = ArchiveReader(seeded.archive)
    doc = explain(seeded.incident.storm_event_id, seeded.index, reader)
    assert doc["duplicates"] == STORM_COPIES and len(doc["occurrences"]) == STORM_COPIES
    deliveries = doc["deliveries"]
    assert len(deliveries) == STORM_COPIES + 1
    first = deliveries[0]
    assert first["first"] and first["status"] == "ACCEPTED"
    assert first["provenance"]["shard_id"] == "shardId-000000000001"
    assert first["provenance"]["sequence_number"] == "1000"
    assert first["archive"]["uri"].startswith("s3://memory/raw/source=orders/")
    assert {d["status"] for d in deliveries[1:]} == {"DUPLICATE"}
    assert all(d["lag_ms"] == 39 * 60_000 for d in deliveries)
    assert doc["summary"]["duplicate"] == STORM_COPIES
    assert doc["replays"] is None and doc["aggregate_versions"] is None  # not tracked yet
    text = text_of(render_explain, doc)
    assert f"deliveries ({STORM_COPIES + 1})" in text
    assert "orders/shardId-000000000001 seq 1000.0" in text
    assert "replays: not tracked yet" in text


def test_explain_of_a_rejected_record_and_with_a_lineage(seeded: MemoryIncident) -> None:
    rejected = next(
        item["event_id"]
        for item in seeded.index.items.values()
        if item.get("status") == "REJECTED" and item.get("reason") == "invalid_time"
    )

    class Lineage:
        def replays(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
            assert event["event_id"] == rejected and event["status"] == "REJECTED"
            return [
                {
                    "replay_id": "r1",
                    "status": "COMPLETED",
                    "requester": "ops",
                    "target": "sqs:q",
                    "sent": 2,
                    "first_sent_at": "2025-12-29T02:00:00Z",
                    "log_complete": True,
                }
            ]

        def aggregate_versions(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
            return []

    doc = explain(rejected, seeded.index, ArchiveReader(seeded.archive), Lineage())
    assert doc["status"] == "REJECTED" and doc["event"] is None
    [only] = doc["deliveries"]
    assert (only["reason"], only["provenance"]["origin"]) == ("invalid_time", "http")
    assert doc["replays"][0]["replay_id"] == "r1" and doc["aggregate_versions"] == []
    text = text_of(render_explain, doc)
    assert "http request bad-" in text
    assert "r1 COMPLETED by ops → sqs:q: sent 2 times at 2025-12-29T02:00:00Z" in text
    assert "aggregate versions: 0" in text


def test_every_card_and_chart_says_which_time_it_counts_by(report: InvestigationReport) -> None:
    html = render_report(report)
    cards = re.findall(
        r'<div class="card[^"]*">([^<]+)<b>[^<]*</b><small[^>]*>([^<]+)</small>', html
    )
    assert dict(cards) == {
        "deliveries": "by arrival",
        "accepted": "by arrival",
        "events": "by event time",
        "duplicate rate": "by arrival",
        "rejected": "by arrival",
        "gaps": "by event time",
        "worst p99 lag": "by event time",
        "duplicate storms": "by arrival",
    }
    titles = re.findall(r"<svg[^>]*><title>([^<]+)</title>", html)
    assert all("by event time" in t for t in titles if t.startswith("events per hour"))
    assert "duplicates per hour by arrival" in titles
    assert "Lateness (ingest time minus event time), by event time" in html


def test_time_axes_carry_dates(seeded: MemoryIncident) -> None:
    """A week's chart starting at 18:00 labels each midnight with its date, not "18:00" x 7."""
    inv = Investigator(MemoryIndexQueries(seeded.index), seeded.clock)
    doc = inv.report(inv.window("2025-12-22T18:00:00Z", "2025-12-29T18:00:00Z"), sources=[SOURCE])
    html = render_report(doc)
    chart = html[html.index("<svg") : html.index("</svg>")]
    ticks = re.findall(r'<text class="label" x="[\d.]+" y="\d+">([^<]+)</text>', chart)
    assert ticks == ["12-23", "12-24", "12-25", "12-26", "12-27", "12-28", "12-29"], ticks


def test_a_series_with_no_data_is_listed_once_not_drawn(seeded: MemoryIncident) -> None:
    inv = Investigator(MemoryIndexQueries(seeded.index), seeded.clock)
    doc = inv.report(inv.window(SINCE, UNTIL), sources=[SOURCE, "gone"])
    html = render_report(doc)
    assert "no data in window (by event time): gone / all types" in html
    assert "gone / all types:" not in html and "events per hour by event time, gone" not in html
    assert "no data in window: gone / all types" in text_of(render_gaps, doc.gaps)
