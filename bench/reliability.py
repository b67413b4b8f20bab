"""The reliability suite, long form: bad input, faults, crashes, load and security, on a
``pik local`` backend it starts itself; prints ONE table of figures (tried, survived, lost) and
writes it to ``bench/results/reliability-<UTC time>.json`` and ``reliability-latest.json``.

    .venv/bin/python bench/reliability.py            # the full run (make reliability)
    .venv/bin/python bench/reliability.py --quick    # the short sizes of the pytest files
    .venv/bin/python bench/reliability.py --only faults,crash [--json]

The scenarios are the ones ``tests/reliability/`` runs in short form (the same code, bigger
numbers). Exit code 1 when any scenario lost something or failed a check.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the scenarios live in tests/reliability (not an installed package)

from tests.reliability import bad_input, crash, fault_runs, load, security  # noqa: E402
from tests.reliability.support import Figures, kit_with, settings_for  # noqa: E402

RESULTS = ROOT / "bench" / "results"
GROUPS = ("bad_input", "faults", "crash", "load", "security")
TOKEN = "bench-reliability-token"


@dataclass(frozen=True)
class Sizes:
    fuzz_examples: int
    fuzz_batch_examples: int
    schemathesis_examples: int
    tap_records: int
    fault_events: int
    processor_events: int
    tap_fault_records: int
    serve_events: int
    serve_kills: int
    process_events: int
    process_kills: int
    process_visibility_s: int | None  # None: the command unchanged (120 s visibility)
    tap_crash_records: int
    tap_kills: int
    load_seconds: float
    load_batch_seconds: float
    key_examples: int


# The pytest files' sizes (a few minutes).
QUICK = Sizes(
    fuzz_examples=25,
    fuzz_batch_examples=12,
    schemathesis_examples=8,
    tap_records=30,
    fault_events=150,
    processor_events=30,
    tap_fault_records=300,
    serve_events=120,
    serve_kills=3,
    process_events=30,
    process_kills=2,
    process_visibility_s=3,
    tap_crash_records=0,
    tap_kills=0,
    load_seconds=8.0,
    load_batch_seconds=5.0,
    key_examples=25,
)
# make reliability (~30 minutes on 2 cores).
FULL = Sizes(
    fuzz_examples=200,
    fuzz_batch_examples=60,
    schemathesis_examples=60,
    tap_records=200,
    fault_events=1500,
    processor_events=150,
    tap_fault_records=3000,
    serve_events=800,
    serve_kills=12,
    process_events=120,
    process_kills=5,
    process_visibility_s=None,
    tap_crash_records=1500,
    tap_kills=8,
    load_seconds=60.0,
    load_batch_seconds=30.0,
    key_examples=200,
)


def _kit(endpoint: str, **overrides: Any) -> Any:
    kit = kit_with(settings_for(endpoint, **overrides))
    kit.bootstrap().run(demo_stream=False)
    return kit


def scenarios(endpoint: str, sizes: Sizes, workdir: Path) -> dict[str, list[Callable[[], Figures]]]:
    small = {"max_event_bytes": 32 * 1024, "max_body_bytes": 256 * 1024}
    out: dict[str, list[Callable[[], Figures]]] = {
        "bad_input": [
            lambda: bad_input.fuzz_http(
                _kit(endpoint, **small),
                examples=sizes.fuzz_examples,
                batch_examples=sizes.fuzz_batch_examples,
            ),
            lambda: bad_input.schemathesis_run(
                _kit(endpoint), examples_per_operation=sizes.schemathesis_examples
            ),
            lambda: bad_input.tap_bad_records(_kit(endpoint), records=sizes.tap_records),
        ],
        "faults": [
            lambda: fault_runs.http_ingest_under_faults(
                endpoint, events=sizes.fault_events, rate=0.15, seed=11
            ),
            lambda: fault_runs.http_ingest_under_faults(
                endpoint, events=sizes.fault_events, rate=0.3, seed=12, max_attempts=1
            ),
            lambda: fault_runs.processor_under_faults(
                endpoint, events=sizes.processor_events, rate=0.15, seed=13, deadline_s=900
            ),
            lambda: fault_runs.tap_under_faults(
                endpoint, records=sizes.tap_fault_records, rate=0.3, seed=14
            ),
        ],
        "crash": [
            lambda: crash.serve_crash(
                endpoint, events=sizes.serve_events, kills=sizes.serve_kills, seed=21
            ),
            lambda: crash.processor_crash(
                endpoint,
                events=sizes.process_events,
                kills=sizes.process_kills,
                workdir=workdir,
                seed=22,
                visibility_s=sizes.process_visibility_s,
            ),
        ],
        "load": [
            lambda: load.load_run(endpoint, duration=sizes.load_seconds, concurrency=8),
            lambda: load.load_run(
                endpoint, duration=sizes.load_batch_seconds, concurrency=4, batch=100
            ),
        ],
        "security": [
            lambda: security.token_on_every_route(_kit(endpoint, api_token=TOKEN), TOKEN),
            lambda: security.size_limits(_kit(endpoint)),
            lambda: security.keys_stay_in_prefix(_kit(endpoint), examples=sizes.key_examples),
            lambda: security.no_secret_in_logs(endpoint),
        ],
    }
    if sizes.tap_crash_records:

        def tap() -> Figures:
            settings = settings_for(endpoint)
            kit = kit_with(settings)
            kit.bootstrap().run(demo_stream=False)
            return crash.tap_crash(
                kit,
                settings,
                records=sizes.tap_crash_records,
                kills=sizes.tap_kills,
                workdir=workdir,
            )

        out["crash"].append(tap)
    return out


def highlights(f: Figures) -> str:
    """The few notes a reader of the table needs; the JSON has them all."""
    n = f.notes
    if "faults" in n:
        faults = n["faults"]
        kinds = ", ".join(f"{k} {v}" for k, v in faults["by_kind"].items())
        return (
            f"injected {faults['injected']}/{faults['attempts']} ({faults['share']:.1%}): {kinds}"
        )
    if "kills" in n:
        return f"kills {n['kills']}" + (
            f", client errors {sum(n.get('client_errors', {}).values())}"
            if "client_errors" in n
            else ""
        )
    if "latency_ms" in n:
        lat, rss = n["latency_ms"], n["server_rss"]
        return (
            f"{n['requests_per_s']} req/s, {n['events_per_s']} ev/s, p50 {lat['p50']} ms, "
            f"p99 {lat['p99']} ms, errors {n['error_rate']:.2%}, RSS {rss['start_mib']}→"
            f"{rss['max_mib']} MiB"
        )
    if "rejections_by_reason" in n:
        answers = f", answers {n['answers_by_code']}" if "answers_by_code" in n else ""
        return f"{len(n['rejections_by_reason'])} rejection reasons{answers}"
    if "requests_by_operation" in n:
        return f"{len(n['requests_by_operation'])} operations"
    if "routes" in n:
        return f"{len(n['routes'])} routes"
    return ""


def table(rows: list[Figures]) -> str:
    head = ("scenario", "tried", "survived", "lost", "s", "ok", "notes")
    body = [
        (
            f.scenario,
            f"{f.tried:,}",
            f"{f.survived:,}",
            f"{f.lost:,}",
            f"{f.seconds:.0f}",
            "yes" if f.ok else "NO",
            highlights(f),
        )
        for f in rows
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head) - 1)]
    lines = []
    for row in [head, (*("-" * w for w in widths), "-----"), *body]:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append("  ".join([*cells, row[-1]]))
    totals = (sum(f.tried for f in rows), sum(f.survived for f in rows), sum(f.lost for f in rows))
    lines.append(f"\ntotal: tried {totals[0]:,}, survived {totals[1]:,}, lost {totals[2]:,}")
    failures = [(f.scenario, msg) for f in rows for msg in f.failures[:5]]
    if failures:
        lines.append("failures:")
        lines.extend(f"  {s}: {m[:300]}" for s, m in failures)
    return "\n".join(lines)


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for name in ("boto3", "moto", "fastapi", "hypothesis", "schemathesis"):
        try:
            out[name] = version(name)
        except Exception:
            out[name] = "?"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="The short form's sizes.")
    parser.add_argument("--only", default="", help=f"Comma-separated groups of {GROUPS}.")
    parser.add_argument("--json", action="store_true", help="Print one JSON document.")
    args = parser.parse_args(argv)
    groups = [g for g in args.only.split(",") if g] or list(GROUPS)
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        parser.error(f"unknown groups {unknown} (known: {', '.join(GROUPS)})")
    sizes = QUICK if args.quick else FULL
    started = time.monotonic()
    rows: list[Figures] = []
    with tempfile.TemporaryDirectory() as tmp, crash.pik_local() as endpoint:
        plan = scenarios(endpoint, sizes, Path(tmp))
        for group in groups:
            for make in plan[group]:
                try:
                    figures = make()
                except Exception as exc:  # a scenario that blows up is a failed row, not a crash
                    figures = Figures(f"{group}: crashed")
                    figures.fail(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}")
                rows.append(figures)
                if not args.json:
                    print(f"  done: {figures.scenario} ({figures.seconds:.0f} s)", file=sys.stderr)
    now = datetime.now(UTC)
    doc = {
        "benchmark": "reliability",
        "when": now.isoformat(),
        "mode": "quick" if args.quick else "full",
        "groups": groups,
        "seconds": round(time.monotonic() - started, 1),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": versions(),
        "sizes": sizes.__dict__,
        "totals": {
            "tried": sum(f.tried for f in rows),
            "survived": sum(f.survived for f in rows),
            "lost": sum(f.lost for f in rows),
        },
        "scenarios": [f.to_json() for f in rows],
        "table": table(rows),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=2, default=str) + "\n"
    (RESULTS / f"reliability-{now:%Y%m%dT%H%M%SZ}.json").write_text(text)
    (RESULTS / "reliability-latest.json").write_text(text)
    if args.json:
        sys.stdout.write(text)
    else:
        print(doc["table"])
        print(f"\n{doc['seconds']:.0f} s on {doc['cpus']} CPUs, load {doc['load_average']}")
    return 0 if all(f.ok for f in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
