"""infra/metrics.py: counters and lag histograms, bounded dimensions, Prometheus text and EMF."""

from __future__ import annotations

import re

from infra.metrics import LAG_BUCKETS_MS, OTHER, Metrics


def sample(text: str, series: str) -> float:
    """The value of one exact series line in Prometheus text."""
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    raise AssertionError(f"{series} not in:\n{text}")


def test_counters_add_up_per_series_and_in_total() -> None:
    m = Metrics()
    m.incr("IngestCount", source="a", event_type="t")
    m.incr("IngestCount", source="a", event_type="t")
    m.incr("IngestCount", 3, source="b", event_type="t")
    assert m.counter("IngestCount", source="a", event_type="t") == 2
    assert m.counter("IngestCount", source="b", event_type="t") == 3
    assert m.counter("IngestCount") == 5
    assert m.counter("DuplicateCount") == 0


def test_after_max_series_new_sources_become_other() -> None:
    m = Metrics(max_series=3)
    for source in ["s1", "s2", "s3", "s4", "s5"]:
        m.incr("IngestCount", source=source)
    m.incr("IngestCount", source="s1")
    text = m.prometheus()
    assert sample(text, 'IngestCount{source="s1"}') == 2
    assert sample(text, 'IngestCount{source="s3"}') == 1
    assert sample(text, f'IngestCount{{source="{OTHER}"}}') == 2
    assert "s4" not in text
    assert "s5" not in text


def test_many_distinct_sources_keep_the_series_count_bounded() -> None:
    m = Metrics(max_series=10)
    for i in range(1_000):
        m.incr("IngestCount", source=f"src-{i}")
    lines = [line for line in m.prometheus().splitlines() if line.startswith("IngestCount{")]
    assert len(lines) == 11  # ten named sources and _other
    assert m.counter("IngestCount") == 1_000


def test_configured_values_are_the_only_dimension_values() -> None:
    m = Metrics(known_values=["orders", "order_created"])
    m.incr("IngestCount", source="orders", event_type="order_created")
    m.incr("IngestCount", source="surprise", event_type="order_created")
    text = m.prometheus()
    assert sample(text, 'IngestCount{event_type="order_created",source="orders"}') == 1
    assert sample(text, f'IngestCount{{event_type="order_created",source="{OTHER}"}}') == 1
    assert "surprise" not in text


def test_missing_dimension_value_is_unknown() -> None:
    m = Metrics()
    m.incr("RejectedCount", source=None)
    assert sample(m.prometheus(), 'RejectedCount{source="_unknown"}') == 1


def test_prometheus_escapes_label_values() -> None:
    m = Metrics()
    m.incr("IngestCount", source='say "hi"\\now\nplease')
    text = m.prometheus()
    assert 'IngestCount{source="say \\"hi\\"\\\\now\\nplease"} 1' in text
    # every sample line stays one line
    assert all(line.startswith(("#", "IngestCount")) for line in text.strip().splitlines())


def test_prometheus_has_type_lines_and_no_labels_when_no_dims() -> None:
    m = Metrics()
    m.incr("ReplayMessageCount", 2)
    assert m.prometheus() == "# TYPE ReplayMessageCount counter\nReplayMessageCount 2\n"


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    m = Metrics()
    for value in [50, 100, 101, 5_000, 10**9]:
        m.observe("IngestLagMs", value, source="a")
    text = m.prometheus()
    assert "# TYPE IngestLagMs histogram" in text

    def bucket(le: str) -> float:
        return sample(text, f'IngestLagMs_bucket{{source="a",le="{le}"}}')

    assert bucket("100") == 2  # the bound is inclusive
    assert bucket("1000") == 3
    assert bucket("10000") == 4
    assert bucket(str(LAG_BUCKETS_MS[-1])) == 4
    assert bucket("+Inf") == 5
    counts = [bucket(str(b)) for b in LAG_BUCKETS_MS] + [bucket("+Inf")]
    assert counts == sorted(counts)
    assert sample(text, 'IngestLagMs_count{source="a"}') == 5


def test_histogram_sum_is_the_total_of_observed_lags() -> None:
    m = Metrics()
    for value in [50, 100, 1_500]:
        m.observe("IngestLagMs", value, source="a")
    assert sample(m.prometheus(), 'IngestLagMs_sum{source="a"}') == 1_650


def test_prometheus_prints_large_counters_exactly() -> None:
    m = Metrics()
    m.incr("IngestCount", 1_234_567, source="a")
    m.observe("IngestLagMs", 86_400_001, source="a")
    text = m.prometheus()
    assert re.search(r'^IngestCount\{source="a"\} 1234567$', text, re.M)
    assert re.search(r'^IngestLagMs_sum\{source="a"\} 86400001$', text, re.M)


def test_reading_a_counter_does_not_use_up_series() -> None:
    m = Metrics(max_series=2)
    m.incr("IngestCount", source="a")
    assert m.counter("IngestCount", source="never-sent") == 0
    m.incr("IngestCount", source="b")
    assert m.counter("IngestCount", source="b") == 1
    assert 'IngestCount{source="b"} 1' in m.prometheus()


def test_drain_emf_reports_counts_and_lag_then_starts_afresh() -> None:
    metrics = Metrics()
    metrics.incr("IngestCount", source="demo", event_type="heartbeat")
    metrics.incr("IngestCount", source="demo", event_type="heartbeat")
    metrics.observe("IngestLagMs", 250, source="demo", event_type="heartbeat")
    [doc] = metrics.drain_emf()
    assert doc["IngestCount"] == 2
    assert doc["IngestLagMs"] == {"Values": [1_000], "Counts": [1]}
    assert (doc["source"], doc["event_type"]) == ("demo", "heartbeat")
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Dimensions"] == [["event_type", "source"]]
    assert {m["Name"] for m in directive["Metrics"]} == {"IngestCount", "IngestLagMs"}
    assert metrics.drain_emf() == []
    assert metrics.counter("IngestCount") == 0
