"""Cost benchmark: the index's DynamoDB and S3 bill per event, priced by ``infra.capacity``.

Run from the project root::

    .venv/bin/python bench/cost.py [--events 5000] [--hot-events 2000]

It starts the embedded backend, bootstraps fresh resources, attaches a ``CapacityModel`` (built
from ``DescribeTable``) to the kit's DynamoDB client and a request counter to its S3 client, and
ingests ``bench/ingest.py``'s realistic workload (~5 % resends, ~2 % bad records, 50 entities)
through ``kit.sink.ingest``, the call the HTTP ingest route makes. It prints WRU and RRU per
event, S3 requests per 1,000 events, bytes stored per event (table + indexes, 100 bytes of
overhead per item and index entry) and $ per million events, beside the seed's shape
(conditional put + one S3 object + one index put per event), priced by the same model.

The hot-key part ingests ``--hot-events`` events of one source and one event type over 100,000
entities and scales each key's WRU to one source writing 10,000 events/s; the highest rate per
source is the one that keeps every partition key under 1,000 WCU/s. The tap path is not
measured yet.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import OK, RESULTS_DIR, fresh_settings, make_workload
from tap import binding_for

from consumers.ingest import Submission
from infra.bundles import BUNDLE_PREFIX
from infra.capacity import PARTITION_WCU, CapacityModel, TableSpec, item_size
from infra.claims import COUNTED_PREFIX, PENDING_PREFIX
from infra.index_layout import CATALOG_PARTITION_PREFIX, WIDE_PARTITION
from infra.kinesis_boto import BotoKinesis
from infra.local import EmbeddedAws
from infra.rollups import LATE_PREFIX, ROLLUP_PREFIX
from pik.kit import Kit, build_kit
from producers.produce import Producer, ProduceSpec
from schemas.codec import Provenance
from schemas.envelope import parse_body

# us-east-1 list prices, DynamoDB on-demand (Standard table class) and S3 Standard; from
# aws.amazon.com/dynamodb/pricing/on-demand and aws.amazon.com/s3/pricing, checked 2026-12-03.
# On-demand WRU/RRU were halved in November 2024 (from $1.25 / $0.25 per million).
PRICES = {
    "wru_per_million": 0.625,
    "rru_per_million": 0.125,
    "storage_gb_month": 0.25,
    "s3_put_per_1000": 0.005,
    "s3_get_per_1000": 0.0004,
}
HOT_RATE = 10_000
HOT_ENTITIES = 100_000


class S3Counter:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-send.s3", self._on_send)

    def _on_send(self, event_name: str = "", **_: Any) -> None:
        with self._lock:
            self.counts[event_name.rsplit(".", 1)[-1]] += 1


def _kit(
    endpoint: str, *, stream: bool = False, tag: str | None = None
) -> tuple[Kit, CapacityModel, S3Counter]:
    """A kit on fresh resources, or (``tag``) a new process's kit on those of an earlier one."""
    kit = build_kit(fresh_settings(endpoint, tag or uuid.uuid4().hex[:8]))
    if tag is None:
        kit.bootstrap().run(demo_stream=stream)
    dynamodb = kit.clients.dynamodb()
    tables = [
        TableSpec.from_description(dynamodb.describe_table(TableName=name)["Table"])
        for name in (
            kit.settings.events_table,
            kit.settings.aggregates_table,
            kit.settings.leases_table,
        )
    ]
    model = CapacityModel(tables, clock=lambda: 0.0)  # one bucket: totals per key
    model.install(dynamodb)
    s3 = S3Counter()
    s3.attach(kit.clients.s3())
    return kit, model, s3


def _ingest(kit: Kit, raws: list[bytes], batch: int = 500, label: str = "cost") -> None:
    for start in range(0, len(raws), batch):
        kit.sink.ingest(
            [
                Submission(
                    raw,
                    Provenance(
                        occurrence_id=f"{label}:{i}", origin="http", request_id=f"{label}{start}"
                    ),
                    parse_body(raw),
                    str(i),
                )
                for i, raw in enumerate(raws[start : start + batch], start)
            ],
            label=f"{label}-{start}",
        )


def _dollars(wru: float, rru: float, puts: float, gets: float) -> float:
    return (
        wru * PRICES["wru_per_million"]
        + rru * PRICES["rru_per_million"]
        + puts * 1000 * PRICES["s3_put_per_1000"]
        + gets * 1000 * PRICES["s3_get_per_1000"]
    )  # per million events, given per-event figures


def measure(endpoint: str, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """HTTP ingest: ``bench/ingest.py``'s workload through ``kit.sink.ingest``, on a fresh
    table, then as many new events from a new writer (a restart, a Lambda cold start) on the
    table the first one filled: the second is what a long-running pipeline pays per event (its
    latest-arrivals lists already hold the day's top, so the writer adds few)."""
    workload = make_workload(n)
    kit, model, s3 = _kit(endpoint)
    _ingest(kit, workload.raws)
    fresh = _priced(kit, model, s3, n, workload.kinds.count(OK))
    more = make_workload(n, first=n)
    kit, model, s3 = _kit(endpoint, tag=kit.settings.events_table.rsplit("-", 1)[-1])
    _ingest(kit, more.raws, label="warm")
    return fresh, _priced(kit, model, s3, n, more.kinds.count(OK))


def measure_tap(endpoint: str, n: int) -> dict[str, Any]:
    """The tap: ``pik produce``'s realistic records (5 % producer retries, 2 % bad, 50
    entities, 2 shards) on a stream, drained by ``pik tap --once``'s worker (leases and
    checkpoints included)."""
    kit, model, s3 = _kit(endpoint, stream=True)
    stream = kit.settings.demo_stream
    spec = ProduceSpec(count=n, duplicates=0.05, bad=0.02, entities=50, seed=2)
    report = Producer(BotoKinesis(kit.clients.kinesis()), kit.clock).run(stream, spec)
    s3.counts.clear()  # the producer only wrote to Kinesis; the model saw nothing yet
    totals = kit.tap_worker(binding_for(stream)).run(once=True).totals()
    records = int(totals["user_records"])
    priced = _priced(kit, model, s3, records, int(report.expected["accepted"]))
    priced["statuses_match_workload"] = (
        totals["accepted"],
        totals["duplicates"],
        totals["rejected"],
    ) == (report.expected["accepted"], report.expected["duplicate"], report.expected["rejected"])
    return priced


def _priced(kit: Kit, model: CapacityModel, s3: S3Counter, n: int, accepted: int) -> dict[str, Any]:
    report = model.report()
    events_table = kit.settings.events_table
    wru = sum(v["wru"] for k, v in report.items() if k != "throttled")
    rru = sum(v["rru"] for k, v in report.items() if k != "throttled")
    stored = model.stored_bytes(events_table)
    puts = sum(c for op, c in s3.counts.items() if op in ("PutObject", "UploadPart"))
    gets = sum(c for op, c in s3.counts.items() if op in ("GetObject", "HeadObject"))
    return {
        "events": n,
        "accepted": accepted,
        "wru_per_event": wru / n,
        "wru_per_accepted_event": wru / max(accepted, 1),
        "rru_per_event": rru / n,
        "wru_by_target_per_event": {
            t: u / n
            for v in report.values()
            if isinstance(v, dict)
            for t, u in v["wru_by_target"].items()
        },
        "wru_by_item_kind_per_event": {
            k: u / n for k, u in sorted(_by_kind(model.write_units_by_key(events_table)).items())
        },
        "s3_requests_per_1000": {op: c * 1000 / n for op, c in sorted(s3.counts.items())},
        "bytes_per_event": sum(stored.values()) / max(accepted, 1),
        "bytes_by_target_per_event": {t: b / max(accepted, 1) for t, b in stored.items()},
        "dollars_per_million": _dollars(wru / n, rru / n, puts / n, gets / n),
    }


def item_kind(partition: str) -> str:
    """What an events-table partition key holds (``docs/index.md``)."""
    if partition.startswith(ROLLUP_PREFIX):
        return "rollups (arrival)" if partition.endswith("#arrival") else "rollups"
    if partition.startswith(LATE_PREFIX):
        return "latest arrivals"
    if partition.startswith(CATALOG_PARTITION_PREFIX):
        return "catalog"
    if partition == WIDE_PARTITION:
        return "wide marks"
    if partition.startswith(BUNDLE_PREFIX):
        return "time bundles"
    if partition.startswith((PENDING_PREFIX, COUNTED_PREFIX)):
        return "pending notes, counted marks"
    return "claims, occurrences"


def _by_kind(units: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, n in units.items():
        out[item_kind(key)] = out.get(item_kind(key), 0.0) + n
    return out


def seed_shape(n: int) -> dict[str, Any]:
    """Per event: a conditional put of the identity, one S3 object, one index put; no GSIs."""
    workload = make_workload(n)
    dedupe = TableSpec("dedupe", "event_id", None)
    index = TableSpec("index", "event_id", None)
    model = CapacityModel([dedupe, index])
    wru = stored = 0.0
    for i, raw in enumerate(workload.raws):
        event_id = {"S": f"{i:064x}"}
        wru += model.write_cost("dedupe", None, {"event_id": event_id})[0][2]
        if workload.kinds[i] != OK:
            continue  # a resend fails its condition (1 WRU, counted above); a bad record stops
        item = {
            "event_id": event_id,
            "body": {"S": raw.decode(errors="replace")},
            "s3_key": {"S": f"raw/2026/12/03/{i:064x}.json"},
        }
        wru += model.write_cost("index", None, item)[0][2]
        stored += item_size(item) + 100 + item_size({"event_id": event_id}) + 100
    accepted = workload.kinds.count(OK)
    return {
        "wru_per_event": wru / n,
        "rru_per_event": 0.0,
        "s3_requests_per_1000": {"PutObject": accepted * 1000 / n},
        "bytes_per_event": stored / accepted,
        "dollars_per_million": _dollars(wru / n, 0, accepted / n, 0),
    }


def hot_keys(endpoint: str, n: int, *, constant_entity: bool = False) -> dict[str, Any]:
    """One source and one event type over ``HOT_ENTITIES`` entities (or one constant entity),
    each key's WRU scaled to the source writing ``HOT_RATE`` events/s."""
    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(minutes=5)
    raws = [
        json.dumps(
            {
                "source": "checkout",
                "event_type": "order_placed",
                "entity_id": "-" if constant_entity else f"user_{rng.randrange(HOT_ENTITIES):06d}",
                "event_time": (start + timedelta(milliseconds=i))
                .isoformat(timespec="microseconds")
                .replace("+00:00", "Z"),
                "payload": {"amount": round(rng.uniform(1, 500), 2)},
            }
        ).encode()
        for i in range(n)
    ]
    kit, model, _ = _kit(endpoint)
    _ingest(kit, raws)
    per_key: dict[str, float] = defaultdict(float)
    for (_, target, _key), units in model._wcu.items():
        per_key[target] = max(per_key[target], units)
    hottest = {t: u / n * HOT_RATE for t, u in sorted(per_key.items())}
    worst = max(u / n for u in per_key.values())
    return {"hottest_wru_per_s_at_10k": hottest, "max_events_per_s": PARTITION_WCU / worst}


def _print(results: dict[str, Any]) -> None:
    http, tap, seed = results["http"], results["tap"], results["seed_shape"]
    warm = results["http_warm"]
    print(f"prices: {json.dumps(PRICES)} (us-east-1 on-demand list prices, 2026-12-03)")
    print("HTTP: a fresh table; HTTP warm: as many more events, a new writer, the same table")
    print(f"{'':24}{'HTTP':>10}{'HTTP warm':>11}{'tap':>10}{'seed shape':>11}")
    for label, key in (
        ("WRU per event", "wru_per_event"),
        ("WRU per accepted event", "wru_per_accepted_event"),
        ("RRU per event", "rru_per_event"),
        ("bytes stored per event", "bytes_per_event"),
        ("$ per million events", "dollars_per_million"),
    ):
        cells = [
            f"{r[key]:>{w}.2f}" if key in r else f"{'-':>{w}}"
            for r, w in ((http, 10), (warm, 11), (tap, 10), (seed, 11))
        ]
        print(f"{label:24}{''.join(cells)}")
    cells = [
        f"{sum(r['s3_requests_per_1000'].values()):>{w}.1f}"
        for r, w in ((http, 10), (warm, 11), (tap, 10), (seed, 11))
    ]
    print(f"{'S3 requests per 1,000':24}{''.join(cells)}")
    print(f"tap statuses match the workload: {tap['statuses_match_workload']}")
    for name, run in (("HTTP ingest", http), ("tap", tap)):
        print(f"WRU per event by target ({name}):")
        for target, units in sorted(run["wru_by_target_per_event"].items()):
            print(f"  {target:60}{units:8.2f}")
    for name, run in (("HTTP", http), ("HTTP warm", warm), ("tap", tap)):
        print(f"WRU per event on the events table by item kind ({name}):")
        for kind, units in run["wru_by_item_kind_per_event"].items():
            print(f"  {kind:60}{units:8.2f}")
    print("bytes stored per accepted event by target (HTTP ingest):")
    for target, size in sorted(http["bytes_by_target_per_event"].items()):
        print(f"  {target:60}{size:8.0f}")
    for label, key in (
        (f"over {HOT_ENTITIES:,} entities", "hot"),
        ("one constant entity_id", "hot_constant_entity"),
    ):
        hot = results[key]
        print(
            f"hottest partition key, one source and type at {HOT_RATE:,} events/s, {label} (WRU/s):"
        )
        for target, rate in hot["hottest_wru_per_s_at_10k"].items():
            flag = "  OVER" if rate > PARTITION_WCU else ""
            print(f"  {target:60}{rate:10,.0f}{flag}")
        print(
            f"highest rate per source under {PARTITION_WCU:,.0f} WCU/s on every key: "
            f"{hot['max_events_per_s']:,.0f} events/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--tap-events", type=int, default=3000)
    parser.add_argument("--hot-events", type=int, default=2000)
    parser.add_argument("--no-save", action="store_true", help="write no results file")
    args = parser.parse_args()
    started = datetime.now(UTC)
    results: dict[str, Any] = {"started": started.isoformat(), "args": vars(args)}
    with EmbeddedAws(port=0) as aws:
        results["http"], results["http_warm"] = measure(aws.endpoint_url, args.events)
        results["tap"] = measure_tap(aws.endpoint_url, args.tap_events)
        results["hot"] = hot_keys(aws.endpoint_url, args.hot_events)
        results["hot_constant_entity"] = hot_keys(
            aws.endpoint_url, args.hot_events, constant_entity=True
        )
    results["seed_shape"] = seed_shape(args.events)
    results["prices"] = PRICES
    _print(results)
    if not args.no_save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        text = json.dumps(results, indent=2, sort_keys=True) + "\n"
        for path in (
            RESULTS_DIR / f"cost-{started:%Y%m%dT%H%M%SZ}.json",
            RESULTS_DIR / "cost-latest.json",
        ):
            path.write_text(text)
            print(f"wrote {path.relative_to(RESULTS_DIR.parent.parent)}")


if __name__ == "__main__":
    main()
