"""Rollups, pure part: lag buckets, what one delivery adds, the update a transaction carries,
and percentiles read back from a histogram."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from infra.rollups import (
    ROLLUP_SHARDS,
    Rollup,
    accepted_counts,
    lag_bucket,
    late_bundle,
    late_entries,
    late_item,
    late_key_range,
    late_top,
    merge_rollups,
    occurrence_counts,
    recount,
    update_ops,
)
from pik.investigate.stats import LagStats, lag_histogram


@pytest.mark.parametrize(
    ("lag", "bucket"),
    [(0, 0), (99, 99), (100, 100), (1_234, 1_200), (99_999, 99_000), (-1_234, -1_200)],
)
def test_lag_buckets_keep_two_significant_digits(lag: int, bucket: int) -> None:
    assert lag_bucket(lag) == bucket


def test_a_bucket_is_within_ten_percent_below_the_lag() -> None:
    for lag in random.Random(3).sample(range(100, 10**9), 2_000):
        assert 0.9 * lag < lag_bucket(lag) <= lag


def test_a_first_copy_counts_at_its_ingest_hour_and_at_its_event_hour() -> None:
    same = accepted_counts("s", "t", "2025-12-28T05:10:00Z", "2025-12-28T05:00:00Z", 600_000)
    assert same == {
        ("s", "t", "2025-12-28T05"): Counter(
            {"acc": 1, "la_2025-12-28_600000": 1, "ev": 1, "lg_600000": 1}
        )
    }
    late = accepted_counts("s", "t", "2025-12-28T05:10:00Z", "2025-12-27T23:00:00Z", 1)
    assert late == {
        ("s", "t", "2025-12-28T05"): Counter({"acc": 1, "la_2025-12-27_1": 1}),
        ("s", "t", "2025-12-27T23"): Counter({"ev": 1, "lg_1": 1}),
    }


def test_a_rejection_without_source_counts_under_unknown_with_its_reason() -> None:
    got = occurrence_counts(None, None, "2025-12-28T05:10:00Z", "REJECTED", "invalid_json")
    assert got == {
        ("_unknown", "_unknown", "2025-12-28T05"): Counter({"rej": 1, "rz_invalid_json": 1})
    }
    dup = occurrence_counts("s", "t", "2025-12-28T05:10:00Z", "DUPLICATE", None)
    assert dup == {("s", "t", "2025-12-28T05"): Counter({"dup": 1})}


def _added(update: dict[str, Any]) -> dict[str, str]:
    assert update["UpdateExpression"].startswith("SET #s = :s, #t = :t, #h = :h ADD ")
    return {
        update["ExpressionAttributeNames"][name]: update["ExpressionAttributeValues"][value]["N"]
        for name, value in (
            pair.split() for pair in update["UpdateExpression"].split(" ADD ")[1].split(", ")
        )
    }


def test_the_update_adds_every_counter_to_the_writers_item_of_its_hour() -> None:
    (op,) = update_ops("events", "s", "t", "2025-12-28T05", 3, Counter({"acc": 2, "lg_1200": 1}))
    update = op["Update"]
    assert update["Key"] == {
        "event_id": {"S": "roll#s#2025-12-28"},
        "item": {"S": "2025-12-28T05#t#3"},
    }
    assert _added(update) == {"acc": "2", "lg_1200": "1"}
    assert "ConditionExpression" not in update  # counters never fail a transaction


def test_arrival_counters_go_to_the_hours_arrival_item() -> None:
    counts = Counter({"acc": 2, "la_2025-12-27_1200": 2})
    hour, arrival = (
        op["Update"] for op in update_ops("events", "s", "t", "2025-12-28T05", 1, counts)
    )
    assert hour["Key"]["event_id"] == {"S": "roll#s#2025-12-28"}
    assert arrival["Key"] == {
        "event_id": {"S": "roll#s#2025-12-28#arrival"},
        "item": {"S": "2025-12-28T05#t#1"},
    }
    assert _added(hour) == {"acc": "2"} and _added(arrival) == {"la_2025-12-27_1200": "2"}
    stored = Rollup.from_item(
        {
            "source": "s",
            "event_type": "t",
            "hour": "2025-12-28T05",
            "la_2025-12-27_1200": 2,
            "la_2025-12-28_-5": 1,
        }
    )
    assert stored.arrivals() == {("2025-12-27", 1200): 2, ("2025-12-28", -5): 1}


def test_shards_merge_into_one_rollup_per_hour() -> None:
    parts = [
        Rollup("s", "t", "2025-12-28T05", Counter({"acc": n, "lg_5": 1}))
        for n in range(ROLLUP_SHARDS)
    ]
    [merged] = merge_rollups(parts)
    assert merged.count("acc") == sum(range(ROLLUP_SHARDS)) and merged.lags() == {5: ROLLUP_SHARDS}


def test_percentiles_from_a_histogram_equal_those_of_the_values_it_counts() -> None:
    rng = random.Random(11)
    values = [lag_bucket(int(rng.lognormvariate(8, 2))) for _ in range(5_000)]
    assert LagStats.of_counts(Counter(values)) == LagStats.of(values)
    assert lag_histogram(Counter(values)) == lag_histogram(values)
    assert LagStats.of_counts({}) is None


def test_a_recount_of_items_counts_each_delivery_once() -> None:
    items = [
        {
            "status": "ACCEPTED",
            "source": "s",
            "event_type": "t",
            "ingest_time": "2025-12-28T05:00:01Z",
            "event_time": "2025-12-28T05:00:00Z",
            "lag_ms": 1_000,
        },
        {"status": "DUPLICATE", "source": "s", "event_type": "t",
         "ingest_time": "2025-12-28T06:00:00Z"},
        {"status": "REJECTED", "ingest_time": "2025-12-28T06:30:00Z", "reason": "too_large"},
    ]  # fmt: skip
    got = {(r.source, r.hour): dict(r.counts) for r in recount(items)}
    assert got == {
        ("s", "2025-12-28T05"): {"acc": 1, "ev": 1, "lg_1000": 1, "la_2025-12-28_1000": 1},
        ("s", "2025-12-28T06"): {"dup": 1},
        ("_unknown", "2025-12-28T06"): {"rej": 1, "rz_too_large": 1},
    }


def _late_fields(lag: int, event_id: str, first_occurrence: str = "") -> dict[str, Any]:
    """A first copy's latest-arrivals fields (``LATE_ATTRIBUTES``)."""
    return {
        "event_id": event_id,
        "source": "s",
        "event_type": "t",
        "entity_id": "e",
        "event_time": "2025-12-28T05:00:00Z",
        "ingest_time": "2025-12-28T06:00:00Z",
        "lag_ms": lag,
        "first_occurrence": first_occurrence or f"o-{event_id}",
    }


def test_latest_arrival_keys_sort_the_largest_lag_first() -> None:
    def item(lag: int, event_id: str) -> str:
        return str(late_item(_late_fields(lag, event_id, "o"))["item"])

    keys = [item(5, "b"), item(3_600_000, "a"), item(-20, "c"), item(5, "a")]
    assert sorted(keys) == [keys[1], keys[3], keys[0], keys[2]]
    lags = [-20, 0, 5, 99, 100, 3_600_000, 10**15 + 7]
    for low, high in ((0, 99), (-20, 5), (100, 10**16), (-(10**16), -21)):
        lo, hi = late_key_range(low, high)
        inside = [lag for lag in lags if lo <= item(lag, "x" * 64) <= hi]
        assert inside == [lag for lag in lags if low <= lag <= high], (low, high)


def test_a_latest_arrivals_bundle_sorts_by_its_largest_lag_and_gives_back_its_entries() -> None:
    fields = _late_fields

    small = late_bundle([fields(5, "a"), fields(700, "b")])
    large = late_bundle([fields(3_600_000, "c"), fields(-20, "d"), fields(9, "e")])
    assert sorted([small["item"], large["item"]]) == [large["item"], small["item"]]
    assert late_top(large) == (-3_600_000, "c") and late_top(small) == (-700, "b")
    assert small["event_id"] == late_item(fields(5, "a"))["event_id"]  # the same list
    got = late_entries(large)
    assert [e["lag_ms"] for e in got] == [3_600_000, 9, -20]
    assert got[0] == fields(3_600_000, "c")
    one = late_item(fields(42, "z"))  # an entry of one first copy still reads back
    assert late_entries(one) == [fields(42, "z")] and late_top(one) == (-42, "z")
    tie = late_bundle([fields(700, "a")])  # the same lag: the smaller event id sorts first
    assert sorted([small["item"], tie["item"]]) == [tie["item"], small["item"]]
