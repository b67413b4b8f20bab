"""Investigation reads benchmark: what ``pik audit``, ``gaps`` and ``lag`` over 7 days of a
source read from DynamoDB, at 10,000 and at 1,000,000 events.

Run from the project root::

    .venv/bin/python bench/investigate.py [--events 10000,1000000]

For each size it starts from fresh resources on the embedded backend and ingests, through
``kit.sink.ingest`` (the call the HTTP route and the tap make), one source's 7 days: two event
types, 500 entities, event times spread evenly over the week and arriving 0.1-5 s later (1 % of
them 1-30 hours later), 5 % producer resends and 2 % bad records, in batches (up to 1,000 records
arriving within 5 minutes) with the clock moving with the data. Then it runs the commands (`lag` by event and by arrival) over the week with the Investigator
the CLI uses, a ``CapacityModel`` on its DynamoDB client, and prints Queries, items read
(what DynamoDB returned), entries decoded (rollup items, and the entries inside latest-arrivals
bundles) and RRU per command: the counts come from the rollups, so they stay flat while the
events grow a hundredfold. The ingest itself is not priced here (``bench/cost.py`` does that).
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import RESULTS_DIR, fresh_settings

from consumers.ingest import Submission
from infra.aws import AwsClients, AwsConfig
from infra.capacity import CapacityModel, TableSpec
from infra.clock import FixedClock
from infra.index_queries import DynamoIndexQueries
from infra.local import EmbeddedAws
from pik.investigate import Axis, Investigator
from pik.kit import build_kit
from schemas.codec import Provenance
from schemas.envelope import format_time, parse_body

START = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday; the week investigated
WEEK = timedelta(days=7)
BATCH = 1000  # records at most in one sink batch
BATCH_SPAN = timedelta(minutes=5)  # and arrivals at most this far apart
SOURCE = "shop"


def _records(n: int, seed: int = 5) -> Iterator[tuple[datetime, bytes]]:
    """(arrival time, body) of ``n`` deliveries, in arrival order."""
    rng = random.Random(seed)
    step = WEEK / n
    recent: list[bytes] = []
    due: list[tuple[datetime, int, bytes]] = []  # not arrived yet: (arrival, seq, body)
    for i in range(n):
        at = START + step * i
        while due and due[0][0] <= at:
            arrival, _, body = heapq.heappop(due)
            yield arrival, body
        roll = rng.random()
        if roll < 0.05 and recent:  # a producer resend of a recent event
            heapq.heappush(
                due, (at + timedelta(seconds=rng.uniform(0.1, 5)), i, rng.choice(recent))
            )
            continue
        if roll < 0.07:
            yield at, b'{"source": "shop", "event_type": "order", "entity_id": '  # cut short
            continue
        late = rng.random() < 0.01
        lag = (
            timedelta(hours=rng.uniform(1, 30)) if late else timedelta(seconds=rng.uniform(0.1, 5))
        )
        body = json.dumps(
            {
                "source": SOURCE,
                "event_type": "order" if i % 3 else "refund",
                "entity_id": f"c{rng.randrange(500)}",
                "event_time": format_time(at),
                "payload": {"n": i},
            }
        ).encode()
        recent = [*recent[-49:], body]
        heapq.heappush(due, (at + lag, i, body))
    while due:
        arrival, _, body = heapq.heappop(due)
        yield arrival, body


def _ingest(n: int, endpoint: str) -> tuple[Any, float]:
    clock = FixedClock(START)
    kit = build_kit(fresh_settings(endpoint, uuid.uuid4().hex[:8]), clock=clock)
    kit.bootstrap().run(demo_stream=False)
    started = time.monotonic()
    batch: list[tuple[datetime, bytes]] = []
    done = 0

    def flush() -> None:
        nonlocal done
        batch.sort(key=lambda r: r[0])
        clock.advance(seconds=max((batch[-1][0] - clock.now()).total_seconds(), 0))
        subs = [
            Submission(
                raw,
                Provenance(occurrence_id=f"bench:{done + k}", origin="http", request_id="bench"),
                parse_body(raw),
                str(k),
            )
            for k, (_, raw) in enumerate(batch)
        ]
        kit.sink.ingest(subs, label=f"inv-{done}")
        done += len(batch)
        if done // 50_000 != (done - len(batch)) // 50_000:
            rate = done / (time.monotonic() - started)
            print(f"  ingested {done:,} of {n:,} ({rate:,.0f}/s)", file=sys.stderr)
        batch.clear()

    for record in _records(n):
        if batch and (len(batch) >= BATCH or record[0] - batch[0][0] > BATCH_SPAN):
            flush()
        batch.append(record)
    if batch:
        flush()
    return kit, time.monotonic() - started


def measure(n: int, endpoint: str) -> dict[str, Any]:
    kit, seconds = _ingest(n, endpoint)
    # moto answers a GSI Query by sorting the whole table: at a million items that outlasts the
    # kit's 30 s read timeout (AWS reads the partition), so the reader here waits, and once.
    config = AwsConfig(endpoint_url=endpoint, read_timeout=1800.0, max_attempts=1)
    ddb = AwsClients(config).client("dynamodb")
    table = kit.settings.events_table
    spec = TableSpec.from_description(ddb.describe_table(TableName=table)["Table"])
    out: dict[str, Any] = {"events": n, "ingest_seconds": round(seconds, 1), "commands": {}}
    runs = {
        "audit": lambda inv, w: inv.audit(w, sources=[SOURCE]),
        "gaps": lambda inv, w: inv.gaps(w, sources=[SOURCE]),
        "lag": lambda inv, w: inv.lag(w, sources=[SOURCE]),
        "lag --by arrival": lambda inv, w: inv.lag(w, sources=[SOURCE], axis=Axis.ARRIVAL),
    }
    model = CapacityModel([spec], clock=lambda: 0.0)
    model.install(ddb)
    returned = [0]  # items DynamoDB returned (Query and BatchGetItem), whatever they hold

    def count(model: Any, parsed: dict[str, Any], **_: Any) -> None:
        returned[0] += int(parsed.get("Count", 0))
        returned[0] += sum(len(v) for v in parsed.get("Responses", {}).values())

    ddb.meta.events.register("after-call.dynamodb.Query", count)
    ddb.meta.events.register("after-call.dynamodb.BatchGetItem", count)
    for name, run in runs.items():
        returned[0] = 0
        before = model.report().get(table, {})
        inv = Investigator(DynamoIndexQueries(ddb, table), kit.clock)  # a fresh reader: no cache
        window = inv.window(format_time(START), format_time(START + WEEK))
        report = run(inv, window).to_json()
        after = model.report().get(table, {})
        requests = {
            op: n - before.get("requests", {}).get(op, 0)
            for op, n in after.get("requests", {}).items()
        }
        out["commands"][name] = {
            **report["cost"],
            "dynamodb_items": returned[0],
            "rru": round(float(after.get("rru", 0.0)) - float(before.get("rru", 0.0)), 1),
            "requests": {op: n for op, n in requests.items() if n},
        }
        if name == "audit":
            out["audit_totals"] = report["totals"]
    return out


def out_names(results: dict[str, Any]) -> list[str]:
    return list(results["runs"][0]["commands"]) if results["runs"] else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", default="10000,1000000", help="sizes, comma-separated")
    parser.add_argument("--no-save", action="store_true", help="write no results file")
    args = parser.parse_args()
    sizes = [int(s) for s in args.events.split(",")]
    started = datetime.now(UTC)
    results: dict[str, Any] = {"started": started.isoformat(), "runs": []}
    with EmbeddedAws(port=0) as aws:
        for n in sizes:
            print(f"ingesting {n:,} events over 7 days ...", file=sys.stderr)
            results["runs"].append(measure(n, aws.endpoint_url))
    print(f"{'7 days of one source':32}" + "".join(f"{r['events']:>22,}" for r in results["runs"]))
    print(f"{'deliveries counted':32}" + "".join(
        f"{r['audit_totals']['deliveries']:>22,}" for r in results["runs"]
    ))  # fmt: skip
    for name in out_names(results):
        for label, key in (
            ("Queries", "queries"),
            ("items read", "dynamodb_items"),  # what DynamoDB returned
            ("entries decoded", "scanned"),  # rollups, and entries inside bundles
            ("RRU", "rru"),
        ):
            cells = "".join(f"{r['commands'][name][key]:>22,}" for r in results["runs"])
            print(f"{name + ' ' + label:32}{cells}")
    if not args.no_save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        text = json.dumps(results, indent=2, sort_keys=True) + "\n"
        for path in (
            RESULTS_DIR / f"investigate-{started:%Y%m%dT%H%M%SZ}.json",
            RESULTS_DIR / "investigate-latest.json",
        ):
            path.write_text(text)
            print(f"wrote {path.relative_to(RESULTS_DIR.parent.parent)}")


if __name__ == "__main__":
    main()
