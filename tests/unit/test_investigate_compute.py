"""The pure computations behind audit, gaps and lag: windows, percentiles, baselines, storms."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from infra.rollups import lag_bucket
from pik.investigate.audit import Delivery, HourCounts, find_storms, summarize_deliveries
from pik.investigate.gaps import Bucket, GapKind, count_buckets, find_gaps, gap_series
from pik.investigate.lag import LateEvent, latest_arrivals, summarize_lags
from pik.investigate.stats import LagStats, lag_histogram, median, percentile
from pik.investigate.window import Granularity, Window, WindowError, parse_when, resolve_window
from schemas.envelope import format_time

NOW = datetime(2025, 12, 29, 1, 30, tzinfo=UTC)
DAY = datetime(2025, 12, 28, tzinfo=UTC)
HOUR = Granularity.HOUR


def hours(*counts: int) -> list[Bucket]:
    return [Bucket(DAY + timedelta(hours=i), n) for i, n in enumerate(counts)]


# -- windows ---------------------------------------------------------------------------------
def test_times_are_read_as_offsets_dates_or_durations_before_now() -> None:
    assert parse_when("2025-12-28T05:00:00+01:00", NOW) == datetime(2025, 12, 28, 4, tzinfo=UTC)
    assert parse_when("2025-12-28", NOW) == DAY
    assert parse_when("36h", NOW) == NOW - timedelta(hours=36)
    assert parse_when("2w", NOW) == NOW - timedelta(weeks=2)


@pytest.mark.parametrize("text", ["yesterday", "2025-12-28T05:00:00", "7x", ""])
def test_unreadable_or_offsetless_times_are_refused(text: str) -> None:
    with pytest.raises(WindowError):
        parse_when(text, NOW)


def test_the_default_window_is_the_last_seven_days_and_empty_windows_are_refused() -> None:
    window = resolve_window(None, None, NOW)
    assert (window.start, window.end) == (NOW - timedelta(days=7), NOW)
    with pytest.raises(WindowError, match="empty window"):
        resolve_window("2025-12-29", "2025-12-28", NOW)


def test_a_window_ending_at_midnight_does_not_touch_the_next_day() -> None:
    assert Window(DAY - timedelta(hours=1), DAY + timedelta(days=1)).days() == [
        "2025-12-27",
        "2025-12-28",
    ]


def test_partial_buckets_at_either_end_are_left_out() -> None:
    window = Window(DAY + timedelta(minutes=30), DAY + timedelta(hours=3, minutes=10))
    assert window.buckets(HOUR) == [DAY + timedelta(hours=h) for h in (1, 2)]
    assert Window(DAY, DAY + timedelta(days=2)).buckets(Granularity.DAY) == [
        DAY,
        DAY + timedelta(days=1),
    ]


def test_sort_key_bounds_keep_the_start_in_and_the_end_out() -> None:
    window = Window(DAY, DAY + timedelta(hours=1))
    at_start = f"{format_time(DAY)}#e1"
    at_end = f"{format_time(DAY + timedelta(hours=1))}#e2"
    assert window.low <= at_start <= window.high
    assert not window.low <= at_end <= window.high


# -- statistics ------------------------------------------------------------------------------
def test_nearest_rank_percentiles_are_values_that_occurred() -> None:
    values = list(range(1, 101))
    assert [percentile(values, q) for q in (50, 95, 99, 100)] == [50, 95, 99, 100]
    assert percentile([7], 99) == 7
    with pytest.raises(ValueError):
        percentile([], 50)


def test_median_of_odd_even_and_no_values() -> None:
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 2, 3]) == 2.5
    assert median([]) == 0


def test_lag_stats_and_histogram_edges() -> None:
    assert LagStats.of([]) is None
    stats = LagStats.of([5_000, -200, 90_000_000])
    assert stats is not None
    assert (stats.count, stats.min_ms, stats.p50_ms, stats.max_ms) == (3, -200, 5_000, 90_000_000)
    histogram = dict(lag_histogram([-200, 999, 1_000, 86_399_999, 86_400_000]))
    assert histogram["< 1 s"] == 2  # clock skew counts as on time
    assert histogram["1-10 s"] == 1
    assert histogram["6-24 h"] == 1
    assert histogram["≥ 1 day"] == 1


# -- gaps ------------------------------------------------------------------------------------
def test_buckets_count_time_keys_by_their_prefix() -> None:
    times = [f"{format_time(DAY + timedelta(minutes=m))}#id{m}" for m in (0, 59, 60, 181)]
    counted = count_buckets(times, [DAY + timedelta(hours=h) for h in range(3)], HOUR)
    assert [b.count for b in counted] == [2, 1, 0]  # 03:01 is outside every bucket


def test_an_empty_hour_among_usual_ones_is_a_missing_gap() -> None:
    baseline, gaps = find_gaps(hours(10, 9, 0, 0, 11, 10), HOUR)
    assert baseline == 9.5
    [gap] = gaps
    assert (gap.kind, gap.start, gap.end) == (
        GapKind.MISSING,
        DAY + timedelta(hours=2),
        DAY + timedelta(hours=4),
    )
    assert gap.expected == 19.0


def test_a_dip_under_the_threshold_is_low_and_runs_of_different_kinds_split() -> None:
    _, gaps = find_gaps(hours(10, 1, 0, 10, 1, 10, 10), HOUR)
    assert [(g.kind, g.start.hour, g.count) for g in gaps] == [
        (GapKind.LOW, 1, 1),
        (GapKind.MISSING, 2, 0),
        (GapKind.LOW, 4, 1),
    ]
    _, at_threshold = find_gaps(hours(10, 2, 10), HOUR)  # 2 is exactly 20 % of 10: not flagged
    assert at_threshold == []


def test_a_silent_series_has_no_gaps_and_a_mostly_quiet_one_has_none() -> None:
    assert find_gaps(hours(0, 0, 0), HOUR) == (0.0, [])  # "no data in window", not one gap
    assert find_gaps(hours(3, 0, 0, 0), HOUR)[1] == []  # median 0: no "usual" to miss


def test_a_young_sources_hole_is_found_from_where_its_data_starts() -> None:
    """Two days of data at the end of a week: the empty days before it are not the baseline."""
    week = [0] * (5 * 24) + [10] * 20 + [0, 0, 0] + [10] * 25
    baseline, gaps = find_gaps(hours(*week), HOUR)
    assert baseline == 10
    [gap] = gaps
    assert (gap.kind, gap.start, gap.end) == (
        GapKind.MISSING,
        DAY + timedelta(hours=140),
        DAY + timedelta(hours=143),
    )


def test_the_hour_a_window_ends_in_is_partial_and_never_flagged() -> None:
    window = Window(DAY, DAY + timedelta(hours=3, minutes=1))
    assert window.partial_bucket(HOUR) == DAY + timedelta(hours=3)
    assert Window(DAY, DAY + timedelta(hours=3)).partial_bucket(HOUR) is None
    counts = {"2025-12-28T00": 50, "2025-12-28T01": 50, "2025-12-28T02": 50, "2025-12-28T03": 2}
    series = gap_series("s", None, counts, window, HOUR)
    assert [(b.count, b.partial) for b in series.buckets][-1] == (2, True)
    assert series.total == 152 and series.gaps == []  # 2 events so far: partial, not "low"
    assert series.to_json()["buckets"][-1] == {
        "start": "2025-12-28T03:00:00Z",
        "count": 2,
        "partial": True,
    }
    silent = gap_series("s", None, {}, window, HOUR)
    assert silent.no_data and silent.gaps == [] and silent.to_json()["no_data"] is True


# -- audit -----------------------------------------------------------------------------------
def delivery(status: str, hour: int = 0, **kw: str) -> Delivery:
    at = format_time(DAY + timedelta(hours=hour, minutes=5))
    return Delivery(kw.pop("event_id", "e"), status, at, **kw)


def test_audit_counts_rates_reasons_and_troubled_entities() -> None:
    window = Window(DAY, DAY + timedelta(hours=2))
    rows = [
        delivery("ACCEPTED", source="s", event_type="a", entity_id="u1"),
        delivery("ACCEPTED", source="s", event_type="a", entity_id="u2"),
        delivery("ACCEPTED", source="s", event_type="a", entity_id="u2"),
        delivery("DUPLICATE", source="s", event_type="a", entity_id="u2"),
        delivery("REJECTED", source="s", event_type="b", entity_id="u3", reason="invalid_time"),
        delivery("REJECTED", source="s", event_type="b", entity_id="u3", reason="invalid_time"),
        delivery("REJECTED", hour=1, reason="invalid_json"),  # no source, type or entity
    ]
    report = summarize_deliveries(rows, window, sources=["s"])
    assert report.totals == {"ACCEPTED": 3, "DUPLICATE": 1, "REJECTED": 3}
    assert report.duplicate_rate == 0.25
    assert report.rejection_rate == 3 / 7
    assert [(r.reason, r.count) for r in report.reasons] == [
        ("invalid_time", 2),
        ("invalid_json", 1),
    ]
    assert report.reasons[0].event_types == ["b"]
    assert [(e.entity_id, e.duplicate, e.rejected) for e in report.top_entities] == [
        ("u3", 0, 2),
        ("u2", 1, 0),
    ]
    assert [(d.source, d.event_type, d.total) for d in report.by_day] == [
        ("_unknown", "_unknown", 1),
        ("s", "a", 4),
        ("s", "b", 2),
    ]
    assert [h.rejected for h in report.hourly] == [2, 1]
    doc = report.to_json()
    assert doc["totals"]["deliveries"] == 7
    assert doc["window"] == {"since": "2025-12-28T00:00:00Z", "until": "2025-12-28T02:00:00Z"}


def test_a_storm_is_a_run_of_hours_far_above_the_usual_duplicates() -> None:
    counts = [1, 1, 2, 30, 25, 1, 12, 1]
    hourly = [HourCounts(DAY + timedelta(hours=i), 5, n) for i, n in enumerate(counts)]
    top = {
        DAY + timedelta(hours=3): Counter({"x": 29, "y": 1}),
        DAY + timedelta(hours=4): Counter({"x": 25}),
    }
    storms = find_storms(hourly, top)
    assert [(s.start.hour, s.end.hour, s.duplicates) for s in storms] == [(3, 5, 55), (6, 7, 12)]
    assert storms[0].top_events == [("x", 54), ("y", 1)]


def test_a_producer_that_always_retries_is_not_a_storm() -> None:
    hourly = [HourCounts(DAY + timedelta(hours=i), 20, 20 + i % 3) for i in range(24)]
    assert find_storms(hourly, {}) == []


# -- lag -------------------------------------------------------------------------------------
def test_lags_pool_per_source_and_type_over_days() -> None:
    by_day, overall = summarize_lags(
        {
            ("s", "t", "2025-12-27"): [1, 2, 3],
            ("s", "t", "2025-12-28"): [10],
            ("s", "u", "2025-12-28"): [],
        }
    )
    assert [(g.day, g.stats.max_ms) for g in by_day] == [("2025-12-27", 3), ("2025-12-28", 10)]
    [pooled] = overall
    assert (pooled.stats.count, pooled.stats.p50_ms, pooled.stats.max_ms) == (4, 2, 10)
    assert "histogram" in pooled.to_json() and "histogram" not in by_day[0].to_json()


def test_the_exact_max_replaces_its_bucket_also_when_the_clock_is_ahead() -> None:
    """Histograms hold lags to two significant digits, toward zero; the latest-arrivals entries
    give the exact largest one, negative (a producer clock ahead) included."""
    late, ahead = 127_812_345, -127_812_345  # buckets 120,000,000 and -120,000,000
    by_day, _ = summarize_lags(
        {
            ("s", "t", "2025-12-27"): Counter({lag_bucket(late): 1}),
            ("s", "t", "2025-12-28"): Counter({lag_bucket(ahead): 1}),
        },
        {("s", "t", "2025-12-27"): late, ("s", "t", "2025-12-28"): ahead},
    )
    assert [g.stats.max_ms for g in by_day] == [late, ahead]
    # an entry from outside the top bucket is not the max
    by_day, _ = summarize_lags({("s", "t", "d"): Counter({5_000: 1})}, {("s", "t", "d"): -7})
    assert by_day[0].stats.max_ms == 5_000


def test_latest_arrivals_merge_partitions_latest_first() -> None:
    def late(event_id: str, lag: int) -> LateEvent:
        return LateEvent(event_id, "s", "t", "u", "t0", "t1", lag)

    merged = latest_arrivals([late("a", 5), late("b", 50), late("c", 7), late("b", 50)], top=2)
    assert [e.event_id for e in merged] == ["b", "c"]
