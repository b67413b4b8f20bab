"""Replay benchmark: the kit's replay (index Query, SendMessageBatch) against a naive path.

Run from the project root::

    .venv/bin/python bench/replay.py [--events 100000] [--days 4] [--json]

In one process it starts the embedded backend (moto behind ``EmbeddedAws(port=0)``), bootstraps
fresh resources and writes ``--events`` identity items straight into the events table with
BatchWriteItem (shaped by ``infra.index.claim_item``, with archive pointers, and the time bundles
of ``infra.bundles`` the sink writes with them; no archive files:
nothing here reads payloads). The workload spreads events over ``--days`` days, five sources and
a hundred entities, with one busy entity (``user_042``, 4 % of events) and one small source
(``partner_api``, 8 %). Then, for two selections on the last day,

* **entity day** — ``user_042``'s events of that day;
* **source day** — ``partner_api``'s events of that day;

it measures (a) the kit: ``ReplayService.replay`` to a fresh SQS queue (Query on the right index,
SendMessageBatch of 10, job record writes), and (b) a naive path on the same clients: Scan the
table with a filter, then one SendMessage per matched event, to another fresh queue.

AWS requests are counted by a botocore ``before-send`` hook on every client (retries count).
Each path's queue is fresh because moto's SQS slows down as a queue grows (it recomputes queue
attributes on every send): both paths pay that, on queues of the same depth. The sent messages
are counted on the queue afterwards and must equal the events the workload put in the selection;
a mismatch, or a missed target (``scanned/matched`` ≤ 1.1, ≤ 110 requests per 1,000 messages),
exits 1. Results go to ``bench/results/replay-latest.json``.

The moto server runs in a thread of this same process (client and server share the GIL and the
two cores): absolute rates are the emulator's, not AWS's. Request counts and the scanned/matched
ratio carry over to AWS. An in-process shim (``patch_moto_table_order``, off with
``--moto-as-shipped``) stops moto from sorting the whole table on every Query and Scan page;
writing the 100,000 items still takes minutes (moto spends ~3 ms sizing each item).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from infra.archive import ArchivePointer
from infra.bundles import bundle_item, group_key
from infra.index import BATCH_WRITE_MAX_ITEMS, Claim, claim_item
from infra.local import EmbeddedAws
from pik.kit import Kit, build_kit
from pik.settings import Settings
from producers.replay import parse_request
from schemas.codec import Provenance
from schemas.envelope import format_time

RESULTS = Path(__file__).resolve().parent / "results" / "replay-latest.json"
TARGET_SCANNED_RATIO = 1.1
TARGET_REQUESTS_PER_1K = 110.0
ENTITIES = 100
BUSY_ENTITY, BUSY_SHARE = "user_042", 0.04
SMALL_SOURCE, SMALL_SHARE = "partner_api", 0.08
OTHER_SOURCES = ("checkout", "mobile-app", "billing", "web")
EVENT_TYPES = ("order_placed", "heartbeat", "page_view")
FIRST_DAY = datetime(2025, 12, 25, tzinfo=UTC)
SERVICES = ("s3", "dynamodb", "sqs", "kinesis")


# -- request counting ----------------------------------------------------------------------------
@dataclass
class RequestCounter:
    """Counts every HTTP send of the clients it is attached to, by service and operation, and
    the wall time of their calls (retries included) to show where a path's time goes."""

    counts: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)
    _started: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-send", self._on_send)
        client.meta.events.register("before-call", self._on_call)
        client.meta.events.register("after-call", self._on_return)

    @staticmethod
    def _operation(event_name: str) -> str:
        return ".".join(event_name.split(".")[1:3]) or "unknown"

    def _on_send(self, event_name: str = "", **_: Any) -> None:
        with self._lock:
            self.counts[self._operation(event_name)] += 1

    def _on_call(self, event_name: str = "", **_: Any) -> None:
        self._started[self._operation(event_name)] = time.perf_counter()

    def _on_return(self, event_name: str = "", **_: Any) -> None:
        operation = self._operation(event_name)
        began = self._started.pop(operation, None)
        if began is not None:
            with self._lock:
                self.seconds[operation] += time.perf_counter() - began

    def take(self) -> Counter[str]:
        with self._lock:
            taken, self.counts, self.seconds = self.counts, Counter(), Counter()
        return taken

    def take_seconds(self) -> dict[str, float]:
        with self._lock:
            return {k: round(v, 2) for k, v in sorted(self.seconds.items())}


# -- workload ------------------------------------------------------------------------------------
@dataclass
class Workload:
    events: int
    days: int
    expected: Counter[tuple[str, str]] = field(default_factory=Counter)  # (selector, day) → n

    def day(self, n: int) -> str:
        return str((FIRST_DAY + timedelta(days=n)).date())


def identity_items(workload: Workload, bucket: str) -> list[dict[str, Any]]:
    """Identity items as ingest writes them, spread evenly over the days, in event-time order."""
    per_day = workload.events // workload.days
    step_us = 86_400_000_000 // per_day
    items: list[dict[str, Any]] = []
    for i in range(per_day * workload.days):
        day, slot = divmod(i, per_day)
        digest = hashlib.sha256(f"bench-{i}".encode()).digest()
        roll = int.from_bytes(digest[:4], "big") / 2**32
        roll2 = int.from_bytes(digest[4:8], "big") / 2**32
        entity = BUSY_ENTITY if roll < BUSY_SHARE else f"user_{int(roll2 * ENTITIES):03d}"
        if roll2 < SMALL_SHARE:
            source = SMALL_SOURCE
        else:
            source = OTHER_SOURCES[digest[8] % len(OTHER_SOURCES)]
        event_time = FIRST_DAY + timedelta(days=day, microseconds=slot * step_us + digest[9])
        lag = timedelta(milliseconds=int.from_bytes(digest[10:12], "big") * 10)
        label = workload.day(day)
        workload.expected[("entity", label)] += entity == BUSY_ENTITY
        workload.expected[("source", label)] += source == SMALL_SOURCE
        claim = Claim(
            event_id=hashlib.sha256(digest).hexdigest(),
            occurrence_id=f"bench:{i}",
            source=source,
            event_type=EVENT_TYPES[digest[12] % len(EVENT_TYPES)],
            entity_id=entity,
            event_time=event_time,
            ingest_time=event_time + lag,
            lag_ms=lag // timedelta(milliseconds=1),
            provenance=Provenance(occurrence_id=f"bench:{i}", origin="bench"),
            payload_bytes=180 + digest[13],
            pointer=ArchivePointer(
                bucket,
                f"raw/source={source}/ingest_date={label}/bench-{i // 500:06d}.avro",
                i % 500,
            ),
        )
        items.append(claim_item(claim))
    return items


def with_bundles(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items and the time bundles the sink writes with them: one per (source, type, event
    hour) of each run of 99 claims (one transaction's)."""
    bundles = []
    for start in range(0, len(items), 99):
        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for item in items[start : start + 99]:
            groups.setdefault(group_key(item), []).append(item)
        bundles += [bundle_item(group, 0) for _, group in sorted(groups.items())]
    return items + bundles


def load_index(kit: Kit, items: list[dict[str, Any]]) -> float:
    """BatchWriteItem of 25 (the items and their time bundles), retrying unprocessed items;
    the seconds it took."""
    ddb = kit.clients.dynamodb()
    ser = TypeSerializer()
    began = time.perf_counter()
    identities = items
    items = with_bundles(items)
    for start in range(0, len(items), BATCH_WRITE_MAX_ITEMS):
        requests = [
            {"PutRequest": {"Item": {k: ser.serialize(v) for k, v in item.items()}}}
            for item in items[start : start + BATCH_WRITE_MAX_ITEMS]
        ]
        while requests:
            out = ddb.batch_write_item(RequestItems={kit.names.events_table: requests})
            requests = out.get("UnprocessedItems", {}).get(kit.names.events_table, [])
    # the catalog the sink writes beside them: which (source, type) pairs each day saw
    kit.index.record_catalog(
        {
            entry
            for item in identities
            for entry in (
                (item["event_time"][:10], item["source"], item["event_type"], ""),
                (item["ingest_time"][:10], item["source"], item["event_type"],
                 item["event_time"][:10]),
            )
        }
    )  # fmt: skip
    return time.perf_counter() - began


# -- the two paths -------------------------------------------------------------------------------
@dataclass
class PathResult:
    scenario: str
    path: str
    expected: int
    scanned: int
    matched: int
    sent: int
    on_queue: int
    seconds: float
    requests: Counter[str]
    seconds_by_operation: dict[str, float] = field(default_factory=dict)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def scanned_per_matched(self) -> float:
        return self.scanned / self.matched if self.matched else float("inf")

    @property
    def requests_per_1k(self) -> float:
        return 1000 * self.total_requests / self.sent if self.sent else float("inf")

    @property
    def messages_per_s(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    @property
    def status_polls(self) -> int:
        """The runner's cancel checks: one GetItem every 50 batches or 10 s of sending (paced runs:
        every second), not per message."""
        return int(self.requests.get("dynamodb.GetItem", 0))

    @property
    def correct(self) -> bool:
        return self.matched == self.sent == self.on_queue == self.expected

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "path": self.path,
            "expected": self.expected,
            "scanned": self.scanned,
            "matched": self.matched,
            "sent": self.sent,
            "on_queue": self.on_queue,
            "scanned_per_matched": round(self.scanned_per_matched, 3),
            "seconds": round(self.seconds, 3),
            "messages_per_s": round(self.messages_per_s, 1),
            "aws_requests": self.total_requests,
            "requests_per_1k_messages": round(self.requests_per_1k, 1),
            "status_polls": self.status_polls,
            "requests_per_1k_messages_without_status_polls": round(
                (self.total_requests - self.status_polls) * 1000 / max(self.sent, 1), 1
            ),
            "requests_by_operation": dict(sorted(self.requests.items())),
            "seconds_by_operation": self.seconds_by_operation,
            "correct": self.correct,
        }


def fresh_queue(kit: Kit, name: str) -> str:
    url: str = kit.clients.sqs().create_queue(QueueName=f"{name}-{uuid.uuid4().hex[:6]}")[
        "QueueUrl"
    ]
    return url


def queue_depth(kit: Kit, url: str) -> int:
    attrs = kit.clients.sqs().get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"])


def run_kit(
    kit: Kit,
    scenario: str,
    selector: dict[str, str],
    day: str,
    expected: int,
    counter: RequestCounter,
) -> PathResult:
    url = fresh_queue(kit, f"bench-kit-{scenario.replace(' ', '-')}")
    service = kit.replay_service()
    request = parse_request(
        {
            **selector,
            "start_time": f"{day}T00:00:00Z",
            "end_time": str(datetime.fromisoformat(day).date() + timedelta(days=1)) + "T00:00:00Z",
            "target": url,
        }
    )
    counter.take()
    began = time.perf_counter()
    job = service.replay(request, requester="bench").job
    seconds = time.perf_counter() - began
    by_operation = counter.take_seconds()
    requests = counter.take()
    return PathResult(
        scenario,
        "kit replay (Query + SendMessageBatch)",
        expected,
        job.scanned,
        job.matched,
        job.sent,
        queue_depth(kit, url),
        seconds,
        requests,
        by_operation,
    )


def run_naive(
    kit: Kit,
    scenario: str,
    selector: dict[str, str],
    day: str,
    expected: int,
    counter: RequestCounter,
) -> PathResult:
    """Scan the whole table with a filter, then one SendMessage per matched event."""
    url = fresh_queue(kit, f"bench-naive-{scenario.replace(' ', '-')}")
    ddb, sqs = kit.clients.dynamodb(), kit.clients.sqs()
    [(attr, value)] = selector.items()
    low = format_time(datetime.fromisoformat(day).replace(tzinfo=UTC))
    high = format_time(datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1))
    counter.take()
    began = time.perf_counter()
    scanned = matched = sent = 0
    kwargs: dict[str, Any] = {
        "TableName": kit.names.events_table,
        "FilterExpression": "#a = :v AND event_time >= :lo AND event_time < :hi AND #i = :event",
        "ExpressionAttributeNames": {"#a": attr, "#i": "item"},
        "ExpressionAttributeValues": {
            ":v": {"S": value},
            ":lo": {"S": low},
            ":hi": {"S": high},
            ":event": {"S": "event"},
        },
    }
    while True:
        page = ddb.scan(**kwargs)
        scanned += page["ScannedCount"]
        for item in page.get("Items", []):
            matched += 1
            body = {
                "replay_id": "naive",
                "event_id": item["event_id"]["S"],
                "entity_id": item["entity_id"]["S"],
                "source": item["source"]["S"],
                "event_type": item["event_type"]["S"],
                "event_time": item["event_time"]["S"],
                "status": item["status"]["S"],
                "archive": {
                    "bucket": item["archive_bucket"]["S"],
                    "key": item["archive_key"]["S"],
                    "position": int(item["archive_position"]["N"]),
                },
            }
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))
            sent += 1
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    seconds = time.perf_counter() - began
    by_operation = counter.take_seconds()
    requests = counter.take()
    return PathResult(
        scenario,
        "naive (Scan + filter, SendMessage per event)",
        expected,
        scanned,
        matched,
        sent,
        queue_depth(kit, url),
        seconds,
        requests,
        by_operation,
    )


# -- emulator shim -------------------------------------------------------------------------------
def patch_moto_table_order() -> None:
    """Make moto's Query and Scan stop re-sorting the whole table on every request.

    moto 5.2.5 answers every Query and Scan page by calling ``Table.all_items()``, which sorts
    *every* item of the table by its key with ``DynamoType`` comparisons (measured: 1.7 s for
    4,000 items; minutes for 100,000), and only then looks for the key asked for. On AWS a Query
    costs what it returns. This shim keeps moto's code and answers unchanged, but remembers the
    sorted list between writes: ``put_item`` and ``delete_item`` (through which BatchWriteItem
    and transactions write) bump a per-table version that drops it, and string keys are sorted
    by their text (the order DynamoDB and moto use for S keys). Updates change attributes in
    place, never keys, so the order stays right. Both paths run on the same shimmed server, and
    it changes no request count; ``--moto-as-shipped`` measures without it.
    """
    from moto.dynamodb.models.table import Table

    if getattr(Table.all_items, "_pik_bench_shim", False):
        return
    original_all, original_put, original_delete = Table.all_items, Table.put_item, Table.delete_item

    def all_items(self: Any) -> list[Any]:
        version = getattr(self, "_pik_version", 0)
        cached = getattr(self, "_pik_sorted", None)
        if cached is None or cached[0] != version:
            if self.hash_key_type == "S" and self.range_key_type in (None, "S"):
                items = [
                    item
                    for by_hash in self.items.values()
                    for item in (by_hash.values() if self.range_key_attr else [by_hash])
                ]
                items.sort(
                    key=lambda x: (x.hash_key.value, x.range_key.value if x.range_key else "")
                )
            else:
                items = original_all(self)
            cached = (version, items)
            self._pik_sorted = cached
        return list(cached[1])

    def bump(self: Any) -> None:
        self._pik_version = getattr(self, "_pik_version", 0) + 1

    def put_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        bump(self)
        return original_put(self, *args, **kwargs)

    def delete_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        bump(self)
        return original_delete(self, *args, **kwargs)

    all_items._pik_bench_shim = True  # type: ignore[attr-defined]
    Table.all_items = all_items  # type: ignore[method-assign]
    Table.put_item = put_item  # type: ignore[method-assign]
    Table.delete_item = delete_item  # type: ignore[method-assign]


# -- main ----------------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("boto3", "moto"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "?"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="identity items to index")
    parser.add_argument("--days", type=int, default=4, help="days they spread over")
    parser.add_argument("--json", action="store_true", help="print the results document")
    parser.add_argument(
        "--moto-as-shipped",
        action="store_true",
        help="no emulator shim: every Query/Scan page sorts the whole table (very slow)",
    )
    args = parser.parse_args(argv)
    if not args.moto_as_shipped:
        patch_moto_table_order()
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    workload = Workload(args.events, args.days)
    with EmbeddedAws(port=0) as server:
        tag = uuid.uuid4().hex[:8]
        settings = Settings(
            endpoint_url=server.endpoint_url,
            bucket=f"bench-raw-{tag}",
            events_table=f"bench-events-{tag}",
            replay_jobs_table=f"bench-replay-jobs-{tag}",
            replay_queue=f"bench-replay-{tag}",
            replay_dlq=f"bench-replay-dlq-{tag}",
        )
        kit = build_kit(settings)
        kit.bootstrap().run(demo_stream=False)
        counter = RequestCounter()
        for service in SERVICES:
            counter.attach(kit.clients.client(service))

        items = identity_items(workload, settings.bucket)
        print(f"indexing {len(items):,} events over {args.days} days ...", file=sys.stderr)
        load_seconds = load_index(kit, items)
        counter.take()
        del items
        day = workload.day(args.days - 1)
        scenarios = [
            ("entity day", {"entity_id": BUSY_ENTITY}, workload.expected[("entity", day)]),
            ("source day", {"source": SMALL_SOURCE}, workload.expected[("source", day)]),
        ]
        results: list[PathResult] = []
        for name, selector, expected in scenarios:
            for runner in (run_kit, run_naive):
                print(f"{name}: {runner.__name__} ({expected:,} events) ...", file=sys.stderr)
                results.append(runner(kit, name, selector, day, expected, counter))

    kit_results = [r for r in results if r.path.startswith("kit")]
    targets_met = all(
        r.scanned_per_matched <= TARGET_SCANNED_RATIO
        and r.requests_per_1k <= TARGET_REQUESTS_PER_1K
        for r in kit_results
    )
    correct = all(r.correct for r in results)
    doc = {
        "benchmark": "replay",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {
            "events": workload.events,
            "days": workload.days,
            "replayed_day": day,
            "busy_entity": BUSY_ENTITY,
            "small_source": SMALL_SOURCE,
        },
        "index_load": {"items": workload.events, "seconds": round(load_seconds, 1)},
        "backend": "embedded moto server (EmbeddedAws, port 0) in this same process: client and "
        "server share the GIL and the CPU",
        "emulator_shim": None
        if args.moto_as_shipped
        else "moto Table.all_items kept sorted between writes (see patch_moto_table_order)",
        "machine": {"platform": platform.platform(), **_versions()},
        "targets": {
            "scanned_per_matched_max": TARGET_SCANNED_RATIO,
            "requests_per_1k_messages_max": TARGET_REQUESTS_PER_1K,
            "met": targets_met,
        },
        "correct": correct,
        "paths": [r.to_json() for r in results],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(RESULTS)

    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"index: {workload.events:,} events loaded in {load_seconds:.1f} s; day {day}")
        header = f"{'scenario':11} {'path':46} {'scanned':>8} {'matched':>8} {'sent':>6}"
        print(header + f" {'scan/match':>10} {'msg/s':>7} {'requests':>8} {'req/1k msg':>10}")
        for r in results:
            print(
                f"{r.scenario:11} {r.path:46} {r.scanned:>8,} {r.matched:>8,} {r.sent:>6,} "
                f"{r.scanned_per_matched:>10.3f} {r.messages_per_s:>7.1f} "
                f"{r.total_requests:>8,} {r.requests_per_1k:>10.1f}"
            )
        for r in results:
            spent = ", ".join(f"{op} {sec:.1f} s" for op, sec in r.seconds_by_operation.items())
            print(f"  {r.scenario}, {r.path.split(' (')[0]}: {spent}")
        for r in kit_results:
            without = (r.total_requests - r.status_polls) * 1000 / max(r.sent, 1)
            print(
                f"  {r.scenario}, kit replay: {r.status_polls} of its requests are the cancel "
                f"check (one GetItem every 50 batches or 10 s; {r.seconds:.1f} s of sending); "
                f"without them "
                f"{without:.1f} per 1,000 messages"
            )
        for name, _, _ in scenarios:
            kit_r, naive_r = (r for r in results if r.scenario == name)
            print(
                f"{name}: kit is {kit_r.messages_per_s / max(naive_r.messages_per_s, 1e-9):.1f}x "
                f"the naive rate with {naive_r.total_requests / max(kit_r.total_requests, 1):.1f}x "
                "fewer requests"
            )
        print(f"targets met: {targets_met}; counts correct: {correct}; results: {RESULTS}")
    return 0 if targets_met and correct else 1


if __name__ == "__main__":
    sys.exit(main())
