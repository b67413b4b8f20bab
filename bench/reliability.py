"""The reliability suite, long form: bad input, faults, crashes, load and security, on a
``pik local`` backend it starts itself, and the tap's crash and fault runs again with the stream
on npm ``kinesis-local`` (faithful resharding; tests/emulators.py installs and starts it);
prints ONE table of figures (scenario, backend, tried, survived, lost) and writes it to
``bench/results/reliability-<UTC time>.json`` and ``reliability-latest.json``.

    .venv/bin/python bench/reliability.py            # the full run (make reliability)
    .venv/bin/python bench/reliability.py --quick    # the short sizes of the pytest files
    .venv/bin/python bench/reliability.py --only faults,crash [--json]
    .venv/bin/python bench/reliability.py --no-kinesis-local   # moto rows only (no node/npm)

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
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the scenarios live in tests/reliability (not an installed package)

import pytest  # noqa: E402

from tests.emulators import KINESIS_LOCAL_VERSION, kinesis_local  # noqa: E402
from tests.reliability import bad_input, crash, fault_runs, load, security  # noqa: E402
from tests.reliability.support import KINESIS_LOCAL, Figures, kit_with, settings_for  # noqa: E402
from tests.reliability.table import table  # noqa: E402

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
    tap_crash_write_s: float
    kl_crash_records: int  # the tap SIGKILLed on kinesis-local, with a split and a merge
    kl_crash_kills: int
    kl_crash_write_s: float
    kl_fault_records: int  # the tap under faults on kinesis-local, across a split
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
    tap_crash_write_s=0.0,
    kl_crash_records=300,
    kl_crash_kills=3,
    kl_crash_write_s=10.0,
    kl_fault_records=300,
    load_seconds=8.0,
    load_batch_seconds=5.0,
    key_examples=25,
)
# make reliability (~15 minutes on 2 cores).
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
    tap_crash_write_s=20.0,
    kl_crash_records=1500,
    kl_crash_kills=10,
    kl_crash_write_s=25.0,
    kl_fault_records=2000,
    load_seconds=60.0,
    load_batch_seconds=30.0,
    key_examples=200,
)


def _kit(endpoint: str, **overrides: Any) -> Any:
    kit = kit_with(settings_for(endpoint, **overrides))
    kit.bootstrap().run(demo_stream=False)
    return kit


def scenarios(
    endpoint: str, sizes: Sizes, workdir: Path, kinesis: Callable[[], str] | None = None
) -> dict[str, list[Callable[[], Figures]]]:
    """Every scenario by group; ``kinesis`` gives the kinesis-local endpoint (started on first
    use), None leaves the kinesis-local rows out."""
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
        out["crash"].append(
            lambda: crash.tap_crash(
                endpoint,
                records=sizes.tap_crash_records,
                kills=sizes.tap_kills,
                workdir=workdir,
                write_s=sizes.tap_crash_write_s,
            )
        )
    if kinesis is not None:
        out["faults"].append(
            lambda: fault_runs.tap_under_faults(
                endpoint,
                records=sizes.kl_fault_records,
                rate=0.3,
                seed=32,
                kinesis_endpoint=kinesis(),
                reshard=True,
                get_limit=25,
            )
        )
        out["crash"].append(
            lambda: crash.tap_crash(
                endpoint,
                records=sizes.kl_crash_records,
                kills=sizes.kl_crash_kills,
                workdir=workdir,
                seed=31,
                kinesis_endpoint=kinesis(),
                reshard=True,
                write_s=sizes.kl_crash_write_s,
            )
        )
    return out


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for name in ("boto3", "moto", "fastapi", "hypothesis", "schemathesis"):
        try:
            out[name] = version(name)
        except Exception:
            out[name] = "?"
    return out


def lazy_kinesis_local(stack: ExitStack) -> Callable[[], str]:
    """The kinesis-local endpoint, started on first use and stopped with ``stack``."""
    started: list[str] = []

    def endpoint() -> str:
        if not started:
            try:
                started.append(stack.enter_context(kinesis_local()))
            except pytest.skip.Exception as exc:  # no node/npm: those rows fail, others run
                raise RuntimeError(f"kinesis-local unavailable: {exc}") from None
        return started[0]

    return endpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="The short form's sizes.")
    parser.add_argument("--only", default="", help=f"Comma-separated groups of {GROUPS}.")
    parser.add_argument("--json", action="store_true", help="Print one JSON document.")
    parser.add_argument(
        "--no-kinesis-local",
        action="store_true",
        help=f"Leave out the rows on npm kinesis-local {KINESIS_LOCAL_VERSION} (needs node/npm).",
    )
    args = parser.parse_args(argv)
    groups = [g for g in args.only.split(",") if g] or list(GROUPS)
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        parser.error(f"unknown groups {unknown} (known: {', '.join(GROUPS)})")
    sizes = QUICK if args.quick else FULL
    started = time.monotonic()
    rows: list[Figures] = []
    with tempfile.TemporaryDirectory() as tmp, crash.pik_local() as endpoint, ExitStack() as stack:
        kinesis = None if args.no_kinesis_local else lazy_kinesis_local(stack)
        plan = scenarios(endpoint, sizes, Path(tmp), kinesis)
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
        "versions": {
            **versions(),
            **({} if args.no_kinesis_local else {KINESIS_LOCAL: KINESIS_LOCAL_VERSION}),
        },
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
