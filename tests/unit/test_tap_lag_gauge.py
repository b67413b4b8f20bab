"""The tap's lag gauge: ``TapMillisBehindLatest{stream, shard}`` holds each shard's latest
``MillisBehindLatest``, set on every GetRecords page and every SubscribeToShard event, and is
removed when the shard's reader ends."""

from __future__ import annotations

import json
import threading
import time

from consumers.tap.binding import binding_from_table
from consumers.tap.decode import RecordDecoder
from consumers.tap.fanout import FanOut
from consumers.tap.shard import LAG_GAUGE, ReaderOptions
from consumers.tap.worker import TapOptions, TapWorker
from infra.kinesis import MemoryStream
from infra.leases import MemoryLeaseStore
from infra.metrics import Metrics
from tests.unit.support import MemoryKit

BINDING = binding_from_table({"stream": "clicks", "source": "web", "event_type": "click"})
SHARD = "shardId-000000000000"


class Recording(Metrics):
    def __init__(self) -> None:
        super().__init__()
        self.set_calls: list[tuple[float, dict[str, str | None]]] = []

    def set_gauge(self, name: str, value: float, /, **dims: str | None) -> None:
        if name == LAG_GAUGE:
            self.set_calls.append((value, dims))
        super().set_gauge(name, value, **dims)


def worker(stream: MemoryStream, kit: MemoryKit, metrics: Metrics, efo: bool) -> TapWorker:
    reader = ReaderOptions(
        min_call_interval_s=0, min_subscribe_interval_s=0, idle_wait_s=0.01, limit=4
    )
    return TapWorker(
        "clicks",
        port=stream,
        leases=MemoryLeaseStore(),
        sink=kit.sink,
        decoder=RecordDecoder(BINDING),
        clock=kit.clock,
        metrics=metrics,
        options=TapOptions(
            reader=reader,
            discover_interval_s=0.02,
            fan_out=FanOut(poll_s=0.001) if efo else None,
        ),
    )


def test_gauges_are_set_replaced_and_cleared_per_label_set() -> None:
    m = Metrics(known_values=["web"])  # a fixed set of sources does not bound gauge labels
    m.set_gauge(LAG_GAUGE, 5_000, stream="clicks", shard="shardId-1")
    m.set_gauge(LAG_GAUGE, 0, stream="clicks", shard="shardId-2")
    m.set_gauge(LAG_GAUGE, 1_200, stream="clicks", shard="shardId-1")
    text = m.prometheus()
    assert f"# TYPE {LAG_GAUGE} gauge" in text
    assert f'{LAG_GAUGE}{{shard="shardId-1",stream="clicks"}} 1200' in text.splitlines()
    assert f'{LAG_GAUGE}{{shard="shardId-2",stream="clicks"}} 0' in text.splitlines()
    assert m.gauge(LAG_GAUGE, stream="clicks", shard="shardId-1") == 1_200
    m.clear_gauge(LAG_GAUGE, stream="clicks", shard="shardId-1")
    assert m.gauge(LAG_GAUGE, stream="clicks", shard="shardId-1") is None
    assert "shardId-1" not in m.prometheus()
    (doc,) = m.drain_emf()
    assert doc[LAG_GAUGE] == 0 and doc["shard"] == "shardId-2"
    assert doc["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [
        {"Name": LAG_GAUGE, "Unit": "Milliseconds"}
    ]
    assert m.gauge(LAG_GAUGE, stream="clicks", shard="shardId-2") == 0  # a drain keeps gauges


def test_every_read_sets_the_shards_gauge_polling_and_fan_out() -> None:
    for efo in (False, True):
        stream, kit, metrics = MemoryStream("clicks"), MemoryKit(), Recording()
        stream.event_limit = 4  # as many records per event as per page
        for n in range(10):
            stream.put(json.dumps({"n": n}).encode(), "k")
        summary = worker(stream, kit, metrics, efo).run(once=True)
        # pages / events of 4, 4 and 2 records, then an empty one at the tip
        assert [v for v, _ in metrics.set_calls] == [1000, 1000, 0, 0], efo
        assert {tuple(sorted(d.items())) for _, d in metrics.set_calls} == {
            (("shard", SHARD), ("stream", "clicks"))
        }
        assert summary.shards[SHARD].millis_behind_latest == 0
        assert metrics.gauge(LAG_GAUGE, stream="clicks", shard=SHARD) is None  # reader ended


def test_a_running_tap_shows_each_shards_lag() -> None:
    stream, kit, metrics = MemoryStream("clicks", shards=2), MemoryKit(), Metrics()
    for n in range(6):
        stream.put(json.dumps({"n": n}).encode(), f"k{n}")
    w = worker(stream, kit, metrics, efo=False)
    stop = threading.Event()
    thread = threading.Thread(target=w.run, kwargs={"once": False, "stop": stop})
    thread.start()
    try:
        lines: list[str] = []
        for _ in range(500):
            lines = [x for x in metrics.prometheus().splitlines() if x.startswith(LAG_GAUGE)]
            if len(lines) == 2:
                break
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(10)
    assert sorted(lines) == [
        f'{LAG_GAUGE}{{shard="shardId-00000000000{n}",stream="clicks"}} 0' for n in (0, 1)
    ]
