"""Tap benchmark: (a) the in-process pipeline, (b) end to end on the embedded backend, (c) RSS.

Run from the project root::

    .venv/bin/python bench/tap.py [--pipeline N] [--repeat K] [--e2e N] [--rss 20000,100000]
                                  [--json] [--no-save]

(a) **pipeline**, one core, no AWS: ``RecordDecoder.submissions`` (KPL de-aggregation, JSON
    decode, binding → envelope validation) → ``event_id`` → ``ArchiveRecord`` → Avro container
    encoding (deflate, 500 records per file), on N records from ``pik produce``'s generator,
    plain and KPL-aggregated (50 KiB aggregates). Records/s of user records, in CPU time
    (``time.process_time``), the median of K runs per kind (interleaved), with the garbage
    collector set as ``pik`` sets it (``pik/runtime.py``), with µs per record of
    the three stages; then each step of the stages timed alone (plain workload, KPL
    de-aggregation on the KPL one), so the stage figures can be read step by step.
(b) **end to end**: an embedded moto server in this process; a stream pre-filled with N plain
    records (5 % producer retries, 2 % bad); then ``pik tap --once`` in-process (the
    ``TapWorker`` as the CLI builds it). Records/s, and AWS requests per 1,000 records counted
    by a botocore ``before-send`` hook (one count per HTTP attempt) on every client the tap uses.
(c) **peak RSS**: ``pik local`` and ``pik tap --once`` as separate processes; the stream is
    filled with KPL-aggregated records in steps (20k, then up to 100k in all), the tap drains
    each step, and its peak RSS (``ru_maxrss``) is read after each run.

Results: a table on stdout and ``bench/results/tap-<UTC time>.json``; a run of all three parts
also writes ``bench/results/tap-latest.json`` (a partial run does not replace it; ``--no-save``
writes nothing). Targets (issue 3): (a) ≥ 50,000 records/s/core; (b) ≤ 60 AWS requests per
1,000 records; (c) flat in the record count, < 300 MB. The moto server serializes requests and
shares this machine's two cores, so (b)'s rate is the emulator's, not AWS's; the request count
carries over.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from isal import isal_zlib  # noqa: E402

from consumers.tap.decode import RecordDecoder, StreamRecord  # noqa: E402
from consumers.tap.fastmap import fast_mapper  # noqa: E402
from consumers.tap.shard import DEFAULT_BATCH_RECORDS  # noqa: E402
from infra.kinesis_boto import BotoKinesis  # noqa: E402
from pik.config import parse_config  # noqa: E402
from pik.runtime import tune_collector  # noqa: E402
from producers.produce import (  # noqa: E402
    BINDING_TOML,
    KPL_AGGREGATE_BYTES,
    Producer,
    ProduceSpec,
    generate,
)
from schemas.archive_encoder import RecordEncoder  # noqa: E402
from schemas.codec import (  # noqa: E402
    ARCHIVE_COMPRESSION_LEVEL,
    ArchiveRecord,
    encode_archive,
    new_archive_record,
)
from schemas.envelope import Event, decode_json  # noqa: E402
from schemas.identity import canonical_json, event_id, rejected_event_id  # noqa: E402
from schemas.kpl import UserRecord, aggregate, deaggregate  # noqa: E402

RESULTS_DIR = ROOT / "bench" / "results"
NOW = datetime(2025, 12, 29, 1, 0, tzinfo=UTC)
FILE_RECORDS = 500
DETAIL_RECORDS = 20_000  # records for the per-step breakdown of (a)
TARGETS = {"pipeline_records_per_s": 50_000, "requests_per_1k": 60, "peak_rss_mb": 300}


def binding_for(stream: str) -> Any:
    return parse_config(tomllib.loads(BINDING_TOML.format(stream=stream))).taps[0]


# -- (a) pipeline --------------------------------------------------------------------------------
def _stream_records(n: int, kpl: bool) -> list[StreamRecord]:
    spec = ProduceSpec(count=n, duplicates=0.0, bad=0.0, seed=1)
    produced = list(generate(spec, NOW))
    if kpl:
        aggs = aggregate([(p.partition_key, p.body) for p in produced], KPL_AGGREGATE_BYTES)
        datas = [(a.partition_key, a.data) for a in aggs]
    else:
        datas = [(p.partition_key, p.body) for p in produced]
    return [
        StreamRecord("bench", "shardId-000000000000", str(1000 + i), key, NOW, data)
        for i, (key, data) in enumerate(datas)
    ]


def pipeline(n: int, kpl: bool) -> dict[str, Any]:
    """The pipeline as the shard loop runs it: groups of whole Kinesis records up to
    ``DEFAULT_BATCH_RECORDS`` user records, each decoded, identified and archived (one file per
    (source, event type), as the sink partitions a batch), then let go before the next."""
    records = _stream_records(n, kpl)
    decoder = RecordDecoder(binding_for("bench"))
    stages = {"decode_validate": 0.0, "identify_record": 0.0, "avro_encode": 0.0}
    user_records = out_bytes = files = 0
    clock = time.process_time
    next_record = 0
    started = clock()
    while next_record < len(records):
        t0 = clock()
        subs: list[Any] = []
        while next_record < len(records) and len(subs) < DEFAULT_BATCH_RECORDS:
            subs.extend(decoder.submissions(records[next_record]))
            next_record += 1
        t1 = clock()
        partitions: dict[tuple[Any, Any], list[ArchiveRecord]] = {}
        for sub in subs:
            key = (sub.parsed.source, sub.parsed.event_type)
            partitions.setdefault(key, []).append(_archive_record(sub))
        t2 = clock()
        out_bytes += sum(len(encode_archive(members)) for members in partitions.values())
        t3 = clock()
        stages["decode_validate"] += t1 - t0
        stages["identify_record"] += t2 - t1
        stages["avro_encode"] += t3 - t2
        user_records += len(subs)
        files += len(partitions)
        del subs, partitions  # as the shard loop lets a group go once it is durable
    seconds = clock() - started
    assert user_records == n
    return {
        "kind": "kpl" if kpl else "plain",
        "user_records": user_records,
        "kinesis_records": len(records),
        "batch_user_records": DEFAULT_BATCH_RECORDS,
        "archive_files": files,
        "cpu_seconds": round(seconds, 3),
        "records_per_s": round(user_records / seconds),
        "archive_bytes": out_bytes,
        "stage_us_per_record": {k: round(v * 1e6 / n, 1) for k, v in stages.items()},
    }


def pipelines(n: int, repeat: int) -> list[dict[str, Any]]:
    """Each kind ``repeat`` times, interleaved (so that a change in the machine's load weighs on
    both); per kind the run with the median rate, with every run's rate beside it."""
    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "kpl": []}
    for _ in range(repeat):
        for kpl in (False, True):
            result = pipeline(n, kpl)
            runs[result["kind"]].append(result)
    out = []
    for kind_runs in runs.values():
        ranked = sorted(kind_runs, key=lambda r: r["records_per_s"])
        median = dict(ranked[len(ranked) // 2])
        median["runs_records_per_s"] = [r["records_per_s"] for r in kind_runs]
        out.append(median)
    return out


def stage_detail(n: int, repeat: int) -> dict[str, float]:
    """µs per record of each step of (a), each timed alone on the plain workload (median of
    ``repeat``): what the three stages above are made of. De-aggregation is timed on the KPL
    workload (plain records skip it); the steps add up to the plain pipeline, less the glue."""
    records = _stream_records(n, kpl=False)
    aggregates = _stream_records(n, kpl=True)
    decoder = RecordDecoder(binding_for("bench"))
    fast = fast_mapper(decoder.binding)
    assert fast is not None
    users = [UserRecord(0, r.partition_key, r.data) for r in records]
    values = [decode_json(u.data) for u in users]
    subs = [sub for record in records for sub in decoder.submissions(record)]
    events = [sub.parsed for sub in subs]
    assert all(isinstance(e, Event) for e in events)
    ids = [event_id(e) for e in events]  # type: ignore[arg-type]
    payloads = [canonical_json(e.payload) for e in events]  # type: ignore[union-attr]
    archive_records = [_archive_record(sub) for sub in subs]
    files = [archive_records[i : i + FILE_RECORDS] for i in range(0, n, FILE_RECORDS)]

    def encode_files() -> list[bytes]:
        out = []
        for records_of_file in files:
            encoder = RecordEncoder()  # one per file, as encode_archive has
            out.append(b"".join([encoder.encode(r) for r in records_of_file]))
        return out

    blocks = encode_files()
    steps: dict[str, Callable[[], object]] = {
        "kpl_deaggregate (kpl only)": lambda: [
            deaggregate(a.data, a.partition_key) for a in aggregates
        ],
        "json_decode": lambda: [decode_json(u.data) for u in users],
        "map_validate": lambda: [  # the binding's generated mapping, else the general one
            fast(v, u.partition_key, NOW) or decoder._mapped(u.data, v, None, u.partition_key, NOW)
            for u, v in zip(users, values, strict=True)
        ],
        "submission_objects": lambda: [
            decoder._submission(r, 0, r.partition_key, r.data, e, None)
            for r, e in zip(records, events, strict=True)
        ],
        "event_id": lambda: [event_id(e) for e in events],  # type: ignore[arg-type]
        "canonical_payload": lambda: [canonical_json(e.payload) for e in events],  # type: ignore[union-attr]
        "archive_record_objects": lambda: [
            _archive_record(sub, eid, payload)
            for sub, eid, payload in zip(subs, ids, payloads, strict=True)
        ],
        "avro_record_encoding": encode_files,
        "deflate": lambda: [
            isal_zlib.compress(b, ARCHIVE_COMPRESSION_LEVEL, -isal_zlib.MAX_WBITS) for b in blocks
        ],
    }
    out: dict[str, float] = {}
    for name, step in steps.items():
        times = []
        for _ in range(repeat):
            started = time.process_time()
            step()
            times.append(time.process_time() - started)
        out[name] = round(sorted(times)[len(times) // 2] * 1e6 / n, 1)
    return out


def _archive_record(
    sub: Any, identity: str | None = None, payload: str | None = None
) -> ArchiveRecord:
    """As the ingest sink builds it (``identity`` and ``payload``, when given, computed before)."""
    parsed = sub.parsed
    if not isinstance(parsed, Event):
        return new_archive_record(
            event_id=rejected_event_id(sub.raw),
            status="REJECTED",
            ingest_time=NOW,
            raw=sub.raw,
            provenance=sub.provenance,
            reason=parsed.reason.value,
        )
    payload = payload or canonical_json(parsed.payload)  # once, as the sink prints it
    return new_archive_record(  # positional, as the sink calls it
        identity or event_id(parsed, payload),
        "ACCEPTED",
        NOW,
        sub.raw,
        sub.provenance,
        None,
        None,
        parsed.source,
        parsed.event_type,
        parsed.entity_id,
        parsed.event_time,
        parsed.idempotency_key,
        0,
        payload,
        sub.schema_fingerprint,
    )


# -- (b) end to end ------------------------------------------------------------------------------
class RequestCounter:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-send", self._on_send)

    def _on_send(self, event_name: str = "", **_: Any) -> None:
        self.counts[event_name.removeprefix("before-send.")] += 1


def end_to_end(n: int) -> dict[str, Any]:
    from infra.local import EmbeddedAws
    from pik.kit import build_kit
    from pik.settings import Settings

    with EmbeddedAws(port=0) as server:
        settings = Settings(endpoint_url=server.endpoint_url, demo_stream="bench-tap")
        kit = build_kit(settings)
        kit.bootstrap().run()
        spec = ProduceSpec(count=n, duplicates=0.05, bad=0.02, entities=50, seed=2)
        report = Producer(BotoKinesis(kit.clients.kinesis()), kit.clock).run("bench-tap", spec)
        counter = RequestCounter()
        for service in ("s3", "dynamodb", "kinesis"):
            counter.attach(kit.clients.client(service))
        worker = kit.tap_worker(binding_for("bench-tap"))
        started = time.perf_counter()
        summary = worker.run(once=True).totals()
        seconds = time.perf_counter() - started
    ok = (summary["accepted"], summary["duplicates"], summary["rejected"]) == (
        report.expected["accepted"],
        report.expected["duplicate"],
        report.expected["rejected"],
    )
    requests = sum(counter.counts.values())
    return {
        "user_records": summary["user_records"],
        "seconds": round(seconds, 2),
        "records_per_s": round(summary["user_records"] / seconds),
        "aws_requests": requests,
        "requests_per_1k": round(requests * 1000 / max(1, summary["user_records"]), 1),
        "by_operation": dict(counter.counts.most_common()),
        "statuses_match_workload": ok,
    }


# -- (c) RSS -------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _child_tap(stream: str) -> None:
    """Runs in a child process: drain the stream once, print the summary and peak RSS."""
    from pik.kit import build_kit
    from pik.settings import Settings

    kit = build_kit(Settings())
    totals = kit.tap_worker(binding_for(stream)).run(once=True).totals()
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"user_records": totals["user_records"], "peak_rss_mb": rss_kb / 1024}))


def rss(steps: list[int]) -> list[dict[str, Any]]:
    from infra.aws import AwsClients, AwsConfig
    from infra.clock import SystemClock

    pik = str(Path(sys.executable).with_name("pik"))
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIK_"))}
    env.update(AWS_ENDPOINT_URL=endpoint, PIK_DEMO_STREAM="bench-rss", PIK_LOG_LEVEL="WARNING")
    server = subprocess.Popen(
        [pik, "local", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out: list[dict[str, Any]] = []
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/config", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        subprocess.run([pik, "bootstrap"], env=env, check=True, capture_output=True)
        clients = AwsClients(AwsConfig(endpoint_url=endpoint))
        producer = Producer(BotoKinesis(clients.kinesis()), SystemClock())
        total = 0
        for step, target in enumerate(steps):
            spec = ProduceSpec(count=target - total, kpl=True, entities=500, seed=100 + step)
            producer.run("bench-rss", spec)
            total = target
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, __file__, "--child-tap", "bench-rss"],
                env=env,
                capture_output=True,
                check=True,
            )
            doc = json.loads(done.stdout.decode().strip().splitlines()[-1])
            doc.update(stream_total=total, seconds=round(time.perf_counter() - started, 1))
            doc["peak_rss_mb"] = round(doc["peak_rss_mb"], 1)
            out.append(doc)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
    return out


def _save(results: dict[str, Any], started: datetime, text: str) -> list[Path]:
    """A timestamped copy, and ``tap-latest.json`` when all three parts ran (a partial run
    must not hide the last full one)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    paths = [RESULTS_DIR / f"tap-{started:%Y%m%dT%H%M%SZ}.json"]
    if "end_to_end" in results and "rss" in results:
        paths.append(RESULTS_DIR / "tap-latest.json")
    for path in paths:
        path.write_text(text + "\n")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", type=int, default=50_000, help="0 skips (a)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of (a) per kind; the median is reported"
    )
    parser.add_argument("--e2e", type=int, default=5_000, help="0 skips (b)")
    parser.add_argument("--rss", default="20000,100000", help="cumulative record counts; '' skips")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-save", action="store_true", help="write no results file")
    parser.add_argument("--child-tap", help=argparse.SUPPRESS)
    args = parser.parse_args()
    tune_collector()  # as `pik tap` and the Lambda tap run: the tap's own collector settings
    if args.child_tap:
        _child_tap(args.child_tap)
        return
    started = datetime.now(UTC)
    results: dict[str, Any] = {
        "benchmark": "tap",
        "time": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "targets": TARGETS,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_start": os.getloadavg(),
            "gc_threshold": gc.get_threshold(),
        },
    }
    if args.pipeline > 0:  # 0 skips (a)
        results["pipeline"] = pipelines(args.pipeline, max(1, args.repeat))
        results["pipeline_steps_us_per_record"] = stage_detail(
            min(args.pipeline, DETAIL_RECORDS), max(1, args.repeat)
        )
    if args.e2e:
        results["end_to_end"] = end_to_end(args.e2e)
    steps = [int(s) for s in args.rss.split(",") if s.strip()]
    if steps:
        results["rss"] = rss(steps)
    results["machine"]["load_average_end"] = os.getloadavg()
    text = json.dumps(results, indent=2)
    written = [] if args.no_save else _save(results, started, text)
    if args.json:
        print(text)
        return
    print(f"{'measure':44} {'value':>12}  target")
    for p in results.get("pipeline", []):
        print(
            f"(a) pipeline {p['kind']:5} records/s (1 core)          {p['records_per_s']:>12,}"
            f"  >= {TARGETS['pipeline_records_per_s']:,}"
        )
        stages = ", ".join(f"{k} {v}" for k, v in p["stage_us_per_record"].items())
        print(f"    µs per record: {stages}")
        print(f"    records/s of each run: {p['runs_records_per_s']}")
    steps = results.get("pipeline_steps_us_per_record", {})
    if steps:
        print(f"    steps, µs per record (each alone, plain, {sum(steps.values()):.1f} in all):")
    for name, value in steps.items():
        print(f"      {name:24} {value:>8}")
    if "end_to_end" in results:
        for operation, count in results["end_to_end"]["by_operation"].items():
            print(f"    {operation:40} {count:>7}")
    if "end_to_end" in results:
        e = results["end_to_end"]
        print(f"(b) end to end records/s (embedded moto)       {e['records_per_s']:>12,}")
        print(
            f"(b) AWS requests per 1,000 records             {e['requests_per_1k']:>12}"
            f"  <= {TARGETS['requests_per_1k']}"
        )
        print(
            f"    statuses match the workload                {e['statuses_match_workload']!s:>12}"
        )
    for r in results.get("rss", []):
        print(
            f"(c) peak RSS draining to {r['stream_total']:>7,} records (MB)   "
            f"{r['peak_rss_mb']:>12}  < {TARGETS['peak_rss_mb']}"
        )
    for path in written:
        print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
