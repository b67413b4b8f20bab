"""The investigation use cases on in-memory adapters, over the scripted incident: each command
finds what was planted (a missing hour, late events, a duplicate storm, rejections)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from infra.index import MemoryEventIndex
from infra.index_queries import MemoryIndexQueries, catalog_partition
from infra.rollups import lag_bucket
from pik.investigate import Axis, Granularity, Investigator, SourceRequired
from pik.investigate.gaps import GapKind
from schemas.envelope import format_time
from tests.unit.test_investigate_data import (
    ACCEPTED,
    DUPLICATES,
    END_CLOCK,
    LATE_LAG_MS,
    MISSING_HOUR,
    REJECTED_ORDERS,
    SINCE,
    SOURCE,
    STORM_COPIES,
    STORM_HOUR,
    UNTIL,
    MemoryIncident,
    memory_incident,
)

MIN = 60_000


@pytest.fixture(scope="module")
def seeded() -> MemoryIncident:
    return memory_incident()


@pytest.fixture
def inv(seeded: MemoryIncident) -> Investigator:
    return Investigator(MemoryIndexQueries(seeded.index, page_size=50), seeded.clock)


def test_audit_counts_every_delivery_of_the_source(
    inv: Investigator, seeded: MemoryIncident
) -> None:
    report = inv.audit(inv.window(SINCE, UNTIL), sources=[SOURCE])
    assert report.totals == {
        "ACCEPTED": ACCEPTED,
        "DUPLICATE": DUPLICATES,
        "REJECTED": REJECTED_ORDERS,
    }
    assert report.duplicate_rate == pytest.approx(DUPLICATES / (ACCEPTED + DUPLICATES))
    assert [(r.reason, r.count, r.event_types) for r in report.reasons] == [
        ("invalid_time", 3, ["created"]),
        ("missing_field", 2, ["paid"]),
    ]
    assert report.top_entities[0].entity_id == "cust-storm"
    assert report.top_entities[0].duplicate == STORM_COPIES
    [storm] = report.storms
    assert (storm.start, storm.end) == (STORM_HOUR, STORM_HOUR + timedelta(hours=1))
    assert storm.top_events == [(seeded.incident.storm_event_id, STORM_COPIES)]
    days = {(d.event_type, d.day): d for d in report.by_day}
    assert days[("created", "2025-12-28")].duplicate == STORM_COPIES + 2
    # counted from rollups (one item per type and hour) and the troubled deliveries alone
    troubled = report.totals["DUPLICATE"] + report.totals["REJECTED"]
    assert report.troubled_read == troubled and not report.sampled
    assert report.cost["queries"] > 0 and report.cost["scanned"] < sum(report.totals.values())


def test_audit_of_one_event_type_and_of_unattributable_rejections(inv: Investigator) -> None:
    window = inv.window(SINCE, UNTIL)
    paid = inv.audit(window, sources=[SOURCE], event_type="paid")
    assert paid.totals == {"ACCEPTED": 96, "DUPLICATE": 0, "REJECTED": 2}
    unknown = inv.audit(window, sources=["_unknown"])
    assert [(r.reason, r.count) for r in unknown.reasons] == [("invalid_json", 1)]


def test_without_a_source_or_a_catalog_the_source_is_required(seeded: MemoryIncident) -> None:
    empty = Investigator(MemoryIndexQueries(MemoryEventIndex(), page_size=50), seeded.clock)
    with pytest.raises(SourceRequired, match="--source"):
        empty.audit(empty.window(SINCE, UNTIL))


def test_without_a_source_the_catalog_the_sink_wrote_names_them(inv: Investigator) -> None:
    report = inv.audit(inv.window(SINCE, UNTIL))
    assert SOURCE in report.sources


def test_the_default_window_is_the_last_seven_days_of_the_clock(inv: Investigator) -> None:
    window = inv.window()
    assert (window.start, window.end) == (END_CLOCK - timedelta(days=7), END_CLOCK)
    assert inv.audit(window, sources=[SOURCE]).totals["ACCEPTED"] == ACCEPTED


def test_gaps_find_the_missing_hour_of_one_event_type(inv: Investigator) -> None:
    report = inv.gaps(inv.window(SINCE, UNTIL), sources=[SOURCE])
    series = {s.event_type: s for s in report.series}
    assert set(series) == {None, "created", "paid"}
    [gap] = series["created"].gaps
    assert (gap.kind, gap.start, gap.end) == (
        GapKind.MISSING,
        MISSING_HOUR,
        MISSING_HOUR + timedelta(hours=1),
    )
    assert series["created"].baseline == 4
    assert series["paid"].gaps == []
    assert series[None].gaps == []  # paid still flows in that hour: only per type shows it
    assert len(series["created"].buckets) == 48


def test_gaps_by_arrival_and_by_day(inv: Investigator) -> None:
    window = inv.window(SINCE, UNTIL)
    arrival = inv.gaps(window, sources=[SOURCE], event_type="created", axis=Axis.ARRIVAL)
    [gap] = arrival.series[0].gaps
    assert gap.start == MISSING_HOUR
    daily = inv.gaps(window, sources=[SOURCE], granularity=Granularity.DAY)
    assert all(not s.gaps for s in daily.series)
    assert [b.count for b in daily.series[0].buckets] == [147, 141]


def test_an_event_type_with_no_events_is_no_data_in_window_not_a_gap(inv: Investigator) -> None:
    report = inv.gaps(inv.window(SINCE, UNTIL), sources=[SOURCE], event_type="refunded")
    [series] = report.series
    assert series.no_data and series.gaps == []
    assert report.found == 0 and report.no_data == [series]


def test_lag_percentiles_and_the_latest_arrivals(inv: Investigator, seeded: MemoryIncident) -> None:
    report = inv.lag(inv.window(SINCE, UNTIL), sources=[SOURCE], latest=3)
    overall = {g.event_type: g.stats for g in report.overall}
    assert set(overall) == {"created", "paid"}  # types found with a Query, none given
    created = overall["created"]
    # percentiles from the rollups' histogram: two significant digits; the max is exact
    assert (created.count, created.p50_ms, created.max_ms) == (
        192,
        lag_bucket(44 * MIN),
        LATE_LAG_MS,
    )
    assert created.p95_ms == lag_bucket(58 * MIN + 50_000)
    assert (overall["paid"].p50_ms, overall["paid"].max_ms) == (lag_bucket(24 * MIN), 54 * MIN)
    # the earliest event time of the three arrived latest relative to it
    assert [e.event_id for e in report.latest] == seeded.incident.late_event_ids
    assert all(e.lag_ms > 34 * 60 * MIN for e in report.latest)
    by_day = {(g.event_type, g.day): g.stats.max_ms for g in report.by_day}
    assert by_day[("created", "2025-12-27")] == LATE_LAG_MS
    assert by_day[("created", "2025-12-28")] < 60 * MIN


def test_lag_by_arrival_groups_what_arrived_in_the_window_by_its_event_day(
    inv: Investigator, seeded: MemoryIncident
) -> None:
    window = inv.window("2025-12-28T12:00:00Z", UNTIL)
    report = inv.lag(window, sources=[SOURCE], axis=Axis.ARRIVAL, latest=3)
    low, high = format_time(report.window.start), format_time(report.window.end)
    arrived: dict[tuple[str, str], list[int]] = {}
    for item in seeded.index.items.values():
        if item["item"] == "event" and low <= item["ingest_time"] < high:
            key = (item["event_type"], item["event_time"][:10])
            arrived.setdefault(key, []).append(int(item["lag_ms"]))
    assert len(arrived) > 1  # the late events of the day before arrived in the window too
    got = {(g.event_type, g.day): g.stats for g in report.by_day}
    assert got.keys() == arrived.keys()
    for key, lags in arrived.items():
        assert (got[key].count, got[key].max_ms) == (len(lags), max(lags))
        assert got[key].p50_ms == lag_bucket(got[key].p50_ms)  # read from the histogram
    top = sorted((lag for lags in arrived.values() for lag in lags), reverse=True)[:3]
    assert [e.lag_ms for e in report.latest] == top
    assert report.axis is Axis.ARRIVAL and report.cost["queries"] < 20


def test_lag_since_a_time_leaves_earlier_events_out(inv: Investigator) -> None:
    report = inv.lag(
        inv.window("2025-12-28T00:00:00Z", UNTIL), sources=[SOURCE], event_type="created"
    )
    [overall] = report.overall
    assert overall.stats.max_ms < 60 * MIN and overall.stats.count == 93


def test_the_report_bundles_audit_gaps_and_lag(inv: Investigator) -> None:
    report = inv.report(inv.window(SINCE, UNTIL), sources=[SOURCE])
    doc = report.to_json()
    assert doc["sources"] == [SOURCE]
    assert doc["generated_at"] == "2025-12-29T00:30:00Z"
    assert {"audit", "gaps", "lag"} <= doc.keys()
    json.dumps(doc)  # one JSON document


def test_catalog_items_make_the_source_optional() -> None:
    """The proposed catalog layout: once the sink records it, sources need not be named."""
    seeded = memory_incident()
    for source, event_type in ((SOURCE, "created"), (SOURCE, "paid"), ("_unknown", "_unknown")):
        key = (catalog_partition("2025-12-28"), "cat#" + json.dumps([source, event_type]))
        seeded.index.items[key] = {
            "event_id": key[0],
            "item": key[1],
            "source": source,
            "event_type": event_type,
        }
    inv = Investigator(MemoryIndexQueries(seeded.index), seeded.clock)
    report = inv.audit(inv.window(SINCE, UNTIL))
    assert report.sources == ["_unknown", SOURCE]
    assert report.totals["REJECTED"] == REJECTED_ORDERS + 1


def test_an_empty_index_answers_zeroes_not_errors() -> None:
    from infra.clock import FixedClock

    inv = Investigator(MemoryIndexQueries(MemoryEventIndex()), FixedClock(END_CLOCK))
    window = inv.window(SINCE, UNTIL)
    assert sum(inv.audit(window, sources=["x"]).totals.values()) == 0
    lag = inv.lag(window, sources=["x"])
    assert lag.overall == [] and lag.latest == []
    [series] = inv.gaps(window, sources=["x"]).series
    assert series.event_type is None and series.no_data and series.gaps == []
