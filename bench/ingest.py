"""Ingest benchmark: the kit's batch ingest against a naive one-event-at-a-time path.

Run from the project root (``make bench`` runs it with the defaults)::

    .venv/bin/python bench/ingest.py [--events N] [--batch 500] [--naive-events M] [--json]

In one process it starts the embedded backend (moto behind ``EmbeddedAws(port=0)``), bootstraps
fresh resources and measures

(a) ``kit.sink.ingest`` on N realistic envelopes (about 50 entities, a few sources and event
    types, ~5 % exact resends, ~2 % bad records) in batches of ``--batch``;
(b) a naive path done here with the same boto3 clients: per event one conditional DynamoDB
    PutItem (``attribute_not_exists``) as the dedupe, one S3 PutObject of the JSON body and one
    index PutItem, on the first M events of the same workload (half before (a), half after, so
    a change in the machine's load weighs on both paths alike).

Seconds are the wall time of the ingest work, parsing included (generating the bytes is not).
AWS requests are counted by a botocore ``before-send`` hook on every client, so each HTTP send
(retries included) counts once; a ``before-parse`` hook times each send until its response is in
("AWS wait": loopback HTTP plus moto's work; the rest is client-side CPU). After each path the
per-record statuses are checked against the workload (ACCEPTED = unique valid events,
DUPLICATE = resends, REJECTED = bad records); a mismatch exits 1. Results go to
``bench/results/ingest-<UTC time>.json`` and ``bench/results/ingest-latest.json``.

The moto server runs in a thread of this same process, so client and server share the GIL and the
two cores. Request counts carry over to AWS; the rates (and so their ratio) are the emulator's,
where per-item server work dominates rather than per-request latency.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from consumers.ingest import Submission
from infra.keys import escape_segment
from infra.local import EmbeddedAws
from infra.resources import Bootstrap, ResourceNames
from pik.kit import Kit, build_kit
from pik.settings import Settings
from schemas.codec import Provenance
from schemas.envelope import Event, Rejection, Status, format_time, parse_body
from schemas.identity import event_id, rejected_event_id

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TARGET_REQUESTS_PER_1K = 60.0
TARGET_SPEEDUP = 10.0
DUPLICATE_SHARE = 0.05
BAD_SHARE = 0.02
ENTITIES = 50
RESEND_WINDOW = 2_000  # a resend repeats one of the last this many valid events
SOURCES: dict[str, tuple[str, ...]] = {
    "checkout": ("order_placed", "order_paid"),
    "mobile-app": ("session_start", "heartbeat"),
    "billing": ("invoice_issued",),
}
SERVICES = ("s3", "dynamodb", "sqs", "kinesis")
SEED = 20251229

OK, DUP, BAD = "ok", "dup", "bad"


# -- workload ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Workload:
    raws: list[bytes]
    kinds: list[str]  # OK (first copy of a valid event), DUP (exact resend) or BAD

    def expected(self, n: int) -> dict[str, int]:
        """Statuses the first ``n`` records must get."""
        counts = Counter(self.kinds[:n])
        return {
            Status.ACCEPTED.value: counts[OK],
            Status.DUPLICATE.value: counts[DUP],
            Status.REJECTED.value: counts[BAD],
        }


def _envelope(rng: random.Random, i: int, now: datetime) -> dict[str, Any]:
    source = rng.choice(list(SOURCES))
    event_type = rng.choice(SOURCES[source])
    # Increasing event times (one per ms) with up to ten minutes of lateness: every valid event
    # has its own identity, and the lag histogram sees realistic values.
    event_time = (
        now - timedelta(minutes=10) + timedelta(milliseconds=i, seconds=-rng.random() * 600)
    )
    envelope: dict[str, Any] = {
        "source": source,
        "event_type": event_type,
        "entity_id": f"user_{rng.randrange(ENTITIES):03d}",
        "event_time": event_time.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "payload": {
            "amount": round(rng.uniform(1, 500), 2),
            "quantity": rng.randint(1, 10),
            "channel": rng.choice(("web", "ios", "android")),
        },
    }
    if rng.random() < 0.3:
        envelope["idempotency_key"] = f"{source}-{i:08d}"
    return envelope


def _bad(rng: random.Random, envelope: dict[str, Any]) -> bytes:
    if rng.random() < 0.5:  # invalid JSON: a truncated body
        return json.dumps(envelope).encode()[:-7]
    missing = dict(envelope)
    del missing[rng.choice(("entity_id", "event_time", "event_type"))]
    return json.dumps(missing).encode()


def make_workload(n: int, seed: int = SEED, *, first: int = 0) -> Workload:
    """``n`` records; ``first``: the number of the first (a second workload from ``first = n``
    shares no identity with the first one)."""
    rng = random.Random(seed)
    n_dup, n_bad = round(n * DUPLICATE_SHARE), round(n * BAD_SHARE)
    kinds = [DUP] * n_dup + [BAD] * n_bad + [OK] * (n - n_dup - n_bad)
    head, tail = kinds[-1:], kinds[:-1]  # the first record is valid, so a resend has an original
    rng.shuffle(tail)
    kinds = head + tail
    now = datetime.now(UTC)
    raws: list[bytes] = []
    originals: list[bytes] = []
    identities: set[str] = set()
    for i, kind in enumerate(kinds):
        if kind == DUP:
            raws.append(rng.choice(originals[-RESEND_WINDOW:]))
            continue
        envelope = _envelope(rng, first + i, now)
        if kind == BAD:
            raws.append(_bad(rng, envelope))
            continue
        raw = json.dumps(envelope).encode()
        parsed = parse_body(raw)
        assert isinstance(parsed, Event), parsed
        identities.add(event_id(parsed))
        originals.append(raw)
        raws.append(raw)
    if len(identities) != len(originals):
        raise SystemExit("workload error: two generated events share an identity")
    return Workload(raws, kinds)


# -- request counting ----------------------------------------------------------------------------
@dataclass
class Tally:
    counts: Counter[str]  # "<service>.<Operation>" -> HTTP sends
    waits: Counter[str]  # operation -> seconds from each send to its response (HTTP + server)

    @property
    def wait_seconds(self) -> float:
        return sum(self.waits.values())


class RequestCounter:
    """Counts every HTTP send of the clients it is attached to, by service and operation.

    ``before-send`` fires once per HTTP attempt (retries included), just before botocore sends;
    ``before-parse`` fires when the response is in, before it is parsed. The time between them is
    the client's wait on AWS (here: loopback HTTP plus moto's work).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._counts: Counter[str] = Counter()
        self._waits: Counter[str] = Counter()

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-send", self._on_send)
        client.meta.events.register("before-parse", self._on_response)

    def _on_send(self, event_name: str = "", **_: Any) -> None:
        # event_name is "before-send.<service>.<Operation>"; returning None lets the send happen.
        operation = ".".join(event_name.split(".")[1:3]) or "unknown"
        with self._lock:
            self._counts[operation] += 1
        self._local.sent = (operation, time.perf_counter())

    def _on_response(self, **_: Any) -> None:
        sent = getattr(self._local, "sent", None)
        if sent is not None:
            operation, started = sent
            self._local.sent = None
            with self._lock:
                self._waits[operation] += time.perf_counter() - started

    def take(self) -> Tally:
        """The tally so far, and start again from zero."""
        with self._lock:
            tally = Tally(self._counts, self._waits)
            self._counts, self._waits = Counter(), Counter()
        return tally


# -- the two paths -------------------------------------------------------------------------------
@dataclass
class PathResult:
    name: str
    events: int
    seconds: float
    tally: Tally
    statuses: dict[str, int]
    expected: dict[str, int]

    @property
    def total_requests(self) -> int:
        return sum(self.tally.counts.values())

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else float("inf")

    @property
    def requests_per_1k(self) -> float:
        return 1000 * self.total_requests / self.events if self.events else 0.0

    @property
    def correct(self) -> bool:
        return self.statuses == self.expected

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.name,
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events_per_s, 1),
            "aws_requests": self.total_requests,
            "requests_per_1k_events": round(self.requests_per_1k, 1),
            "requests_by_operation": dict(sorted(self.tally.counts.items())),
            "aws_wait_seconds": round(self.tally.wait_seconds, 3),
            "aws_wait_seconds_by_operation": {
                op: round(seconds, 3) for op, seconds in sorted(self.tally.waits.items())
            },
            "statuses": self.statuses,
            "expected_statuses": self.expected,
            "correct": self.correct,
        }


def _status_counts(statuses: Sequence[str]) -> dict[str, int]:
    counts = Counter(statuses)
    return {s.value: counts[s.value] for s in Status}


def run_kit(
    kit: Kit,
    workload: Workload,
    n: int,
    batch_size: int,
    run: str,
    counter: RequestCounter,
    say: Callable[[str], None],
) -> PathResult:
    counter.take()
    step = max(n // 10, 1)
    statuses: list[str] = []
    seconds = 0.0
    for start in range(0, n, batch_size):
        raws = workload.raws[start : min(start + batch_size, n)]
        began = time.perf_counter()
        batch = [
            Submission(
                raw,
                Provenance(
                    occurrence_id=f"bench:{run}:{i}",
                    origin="http",
                    request_id=f"bench-{run}-{start // batch_size}",
                ),
                parse_body(raw),
                str(i),
            )
            for i, raw in enumerate(raws, start)
        ]
        results = kit.sink.ingest(batch, label=f"bench-{run}-{start // batch_size}")
        seconds += time.perf_counter() - began
        statuses.extend(r.status.value for r in results)
        done = min(start + batch_size, n)
        if done // step != start // step or done == n:
            say(f"    {done:,}/{n:,} events, {seconds:.1f} s, {done / seconds:,.0f} events/s")
    return PathResult(
        "kit batch ingest (a)",
        n,
        seconds,
        counter.take(),
        _status_counts(statuses),
        workload.expected(n),
    )


@dataclass(frozen=True, slots=True)
class NaiveResources:
    bucket: str
    events_table: str
    dedupe_table: str


class NaivePath:
    """One event at a time: conditional dedupe put, one S3 object, one index item."""

    def __init__(self, kit: Kit, resources: NaiveResources, run: str) -> None:
        self._s3 = kit.clients.s3()
        self._ddb = kit.clients.dynamodb()
        self._res = resources
        self._run = run
        self._ser = TypeSerializer()

    def _claim(self, eid: str, occurrence: str) -> bool:
        try:
            self._ddb.put_item(
                TableName=self._res.dedupe_table,
                Item={"event_id": {"S": eid}, "first_occurrence": {"S": occurrence}},
                ConditionExpression="attribute_not_exists(event_id)",
            )
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise

    def ingest_one(self, i: int, raw: bytes) -> str:
        now = datetime.now(UTC)
        occurrence = f"naive:{self._run}:{i}"
        request = f"naive-{self._run}-{i}"
        parsed = parse_body(raw)
        if isinstance(parsed, Rejection):
            eid, status = rejected_event_id(raw), Status.REJECTED
        else:
            eid = event_id(parsed)
            status = Status.ACCEPTED if self._claim(eid, occurrence) else Status.DUPLICATE
        key = (
            f"naive/{'quarantine' if status is Status.REJECTED else 'raw'}"
            f"/source={escape_segment(parsed.source)}"
            f"/event_type={escape_segment(parsed.event_type)}/{self._run}-{i}.json"
        )
        self._s3.put_object(
            Bucket=self._res.bucket, Key=key, Body=raw, ContentType="application/json"
        )
        ingest_time = format_time(now)
        # The same kind of index item the kit writes: identity item for a first copy, an
        # occurrence item for a duplicate or rejection, with the GSI key attributes and the
        # archive pointer.
        item: dict[str, Any] = {
            "event_id": eid,
            "item": "event" if status is Status.ACCEPTED else f"occ#{occurrence}",
            "status": status.value,
            "ingest_time": ingest_time,
            "provenance": {"occurrence_id": occurrence, "origin": "http", "request_id": request},
            "archive_bucket": self._res.bucket,
            "archive_key": key,
            "archive_position": 0,
            "occ_day": f"{parsed.source or '_unknown'}#{ingest_time[:10]}",
            "occ_key": f"{ingest_time}#{occurrence}",
        }
        if isinstance(parsed, Event):
            event_time = format_time(parsed.event_time)
            item |= {
                "source": parsed.source,
                "event_type": parsed.event_type,
                "entity_id": parsed.entity_id,
                "event_time": event_time,
                "lag_ms": int((now - parsed.event_time).total_seconds() * 1000),
                "payload_bytes": len(raw),
                "time_key": f"{event_time}#{eid}",
                "source_type_day": f"{parsed.source}#{parsed.event_type}#{event_time[:10]}",
            }
        else:
            item |= {"reason": parsed.reason.value, "detail": parsed.detail}
            item |= {
                name: value
                for name, value in (
                    ("source", parsed.source),
                    ("event_type", parsed.event_type),
                    ("entity_id", parsed.entity_id),
                )
                if value is not None
            }
        self._ddb.put_item(
            TableName=self._res.events_table,
            Item={k: self._ser.serialize(v) for k, v in item.items()},
        )
        return status.value


def run_naive(
    path: NaivePath, workload: Workload, start: int, stop: int, counter: RequestCounter
) -> tuple[float, Tally, list[str]]:
    """Records ``start``..``stop`` of the workload, one at a time."""
    counter.take()
    began = time.perf_counter()
    statuses = [path.ingest_one(i, workload.raws[i]) for i in range(start, stop)]
    return time.perf_counter() - began, counter.take(), statuses


def naive_result(
    workload: Workload, n: int, halves: Sequence[tuple[float, Tally, list[str]]]
) -> PathResult:
    statuses = [status for _, _, part in halves for status in part]
    tally = Tally(Counter(), Counter())
    for _, part, _ in halves:
        tally.counts.update(part.counts)
        tally.waits.update(part.waits)
    return PathResult(
        "naive per-event (b)",
        n,
        sum(seconds for seconds, _, _ in halves),
        tally,
        _status_counts(statuses),
        workload.expected(n),
    )


# -- set-up --------------------------------------------------------------------------------------
def fresh_settings(endpoint_url: str, tag: str) -> Settings:
    return Settings(
        endpoint_url=endpoint_url,
        region="us-east-1",
        bucket=f"pik-bench-raw-{tag}",
        events_table=f"pik-bench-events-{tag}",
        leases_table=f"pik-bench-leases-{tag}",
        replay_jobs_table=f"pik-bench-replay-jobs-{tag}",
        aggregates_table=f"pik-bench-aggregates-{tag}",
        replay_queue=f"pik-bench-replay-{tag}",
        replay_dlq=f"pik-bench-replay-dlq-{tag}",
        demo_stream=f"pik-bench-demo-{tag}",
    )


def naive_resources(kit: Kit, run: str) -> NaiveResources:
    """Its own bucket and tables (same clients), so neither path sees the other's data."""
    tag = f"{run}-naive"
    names = ResourceNames(
        bucket=f"pik-bench-naive-{run}",
        events_table=f"pik-bench-naive-events-{run}",
        leases_table=f"pik-bench-naive-leases-{run}",
        replay_jobs_table=f"pik-bench-naive-replay-jobs-{run}",
        aggregates_table=f"pik-bench-naive-aggregates-{run}",
        replay_queue=f"pik-bench-replay-{tag}",
        replay_dlq=f"pik-bench-replay-dlq-{tag}",
    )
    Bootstrap(kit.clients, names).run(demo_stream=False)
    dedupe = f"pik-bench-naive-dedupe-{run}"
    ddb = kit.clients.dynamodb()
    ddb.create_table(
        TableName=dedupe,
        KeySchema=[{"AttributeName": "event_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "event_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.get_waiter("table_exists").wait(TableName=dedupe, WaiterConfig={"Delay": 1})
    return NaiveResources(names.bucket, names.events_table, dedupe)


# -- report --------------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("boto3", "moto", "fastavro", "pydantic"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "?"
    return out


def build_report(
    args: argparse.Namespace, kit_r: PathResult, naive_r: PathResult
) -> dict[str, Any]:
    speedup = kit_r.events_per_s / naive_r.events_per_s if naive_r.events_per_s else 0.0
    return {
        "benchmark": "ingest",
        "time": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "config": {
            "events": args.events,
            "batch": args.batch,
            "naive_events": args.naive_events,
            "duplicate_share": DUPLICATE_SHARE,
            "bad_share": BAD_SHARE,
            "entities": ENTITIES,
            "seed": args.seed,
        },
        "backend": "embedded moto server (EmbeddedAws, port 0) in this same process: client "
        "and server share the GIL and the CPU",
        "machine": {"cpus": _cpu_count(), "platform": platform.platform(), **_versions()},
        "paths": [kit_r.to_json(), naive_r.to_json()],
        "speedup": round(speedup, 1),
        "targets": [
            {
                "target": f"kit <= {TARGET_REQUESTS_PER_1K:g} AWS requests per 1,000 events",
                "value": round(kit_r.requests_per_1k, 1),
                "pass": kit_r.requests_per_1k <= TARGET_REQUESTS_PER_1K,
            },
            {
                "target": f"kit >= {TARGET_SPEEDUP:g}x naive events/s",
                "value": round(speedup, 1),
                "pass": speedup >= TARGET_SPEEDUP,
            },
        ],
        "correct": kit_r.correct and naive_r.correct,
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def render(report: dict[str, Any]) -> str:
    rows = [
        ("path", "events", "seconds", "events/s", "AWS requests", "requests/1k events", "AWS wait")
    ]
    for p in report["paths"]:
        wait = p["aws_wait_seconds"] / p["seconds"] if p["seconds"] else 0.0
        rows.append(
            (
                p["path"],
                f"{p['events']:,}",
                f"{p['seconds']:.2f}",
                f"{p['events_per_s']:,.0f}",
                f"{p['aws_requests']:,}",
                f"{p['requests_per_1k_events']:,.1f}",
                f"{wait:.0%}",
            )
        )
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]

    def line(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [
            v.rjust(w) for v, w in zip(row[1:], widths[1:], strict=True)
        ]
        return "  ".join(cells)

    out = [line(rows[0]), "  ".join("-" * w for w in widths), *(line(r) for r in rows[1:])]
    out.append("")
    out.append(f"speed-up (a)/(b): {report['speedup']:.1f}x events/s")
    out.append("targets:")
    for t in report["targets"]:
        value = f"{t['value']:.1f}" + ("x" if "naive" in t["target"] else "")
        out.append(f"  {t['target']:<48} {value:>8}  {'PASS' if t['pass'] else 'FAIL'}")
    out.append("correctness (statuses vs workload):")
    for p in report["paths"]:
        got = ", ".join(f"{k.lower()} {v:,}" for k, v in p["statuses"].items())
        verdict = "OK" if p["correct"] else f"MISMATCH, expected {p['expected_statuses']}"
        out.append(f"  {p['path']:<22} {got}  {verdict}")
    out.append("requests by operation (seconds waiting for their responses):")
    for p in report["paths"]:
        waits = p["aws_wait_seconds_by_operation"]
        ops = ", ".join(
            f"{k} {v:,} ({waits.get(k, 0.0):.1f} s)" for k, v in p["requests_by_operation"].items()
        )
        out.append(f"  {p['path']:<22} {ops}")
    m = report["machine"]
    out.append(
        f"backend: {report['backend']}; {m['cpus']} CPUs, Python {m['python']}, "
        f"boto3 {m['boto3']}, moto {m['moto']}, load average {m['load_average']['start']} "
        f"at start, {m['load_average']['end']} at end"
    )
    out.append(
        "AWS wait: share of the seconds spent between sending a request and its response "
        "(loopback HTTP + moto), the rest is client-side work (parsing, Avro, botocore)"
    )
    return "\n".join(out)


def write_results(report: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(report, indent=2) + "\n"
    path = RESULTS_DIR / f"ingest-{stamp}.json"
    for target in (path, RESULTS_DIR / "ingest-latest.json"):
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
    return path


# -- main ----------------------------------------------------------------------------------------
def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the kit's batch ingest against a naive per-event path "
        "on the embedded backend."
    )
    parser.add_argument("--events", type=_positive, default=20_000, help="events for the kit path")
    parser.add_argument("--batch", type=_positive, default=500, help="kit batch size")
    parser.add_argument(
        "--naive-events", type=_positive, default=1_000, help="events for the naive path (slow)"
    )
    parser.add_argument("--seed", type=int, default=SEED, help="workload random seed")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    say: Callable[[str], None] = (
        (lambda _msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    )
    workload = make_workload(max(args.events, args.naive_events), args.seed)
    run = uuid.uuid4().hex[:8]
    counter = RequestCounter()
    with EmbeddedAws(port=0) as server:
        kit = build_kit(fresh_settings(server.endpoint_url, run))
        for service in SERVICES:
            counter.attach(kit.clients.client(service))
        kit.bootstrap().run(demo_stream=False)
        naive = NaivePath(kit, naive_resources(kit, run), run)
        # The naive path runs half before and half after the kit path, so that a change in the
        # machine's load during the run weighs on both paths alike.
        m, half = args.naive_events, args.naive_events // 2
        load_before = _load()
        say(f"(b) naive per-event path: first {half:,} of {m:,} events ...")
        first = run_naive(naive, workload, 0, half, counter)
        say(f"(a) kit batch ingest: {args.events:,} events in batches of {args.batch} ...")
        kit_r = run_kit(kit, workload, args.events, args.batch, run, counter, say)
        say(f"(b) naive per-event path: last {m - half:,} of {m:,} events ...")
        second = run_naive(naive, workload, half, m, counter)
        naive_r = naive_result(workload, m, [first, second])
    report = build_report(args, kit_r, naive_r)
    report["machine"]["load_average"] = {"start": load_before, "end": _load()}
    path = write_results(report)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
        print(
            f"results: {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}"
        )
    if not report["correct"]:
        print("error: ingest statuses do not match the workload", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
