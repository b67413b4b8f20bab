"""Processor benchmark: messages/s, AWS requests and window items read per 1,000 messages.

Two cases by default, each a replay of ``--events`` events fed to the processor in batches of
10, exactly as an SQS event source mapping hands them to the Lambda handler: spread over 100
entities (two days each: 200 windows), and all for one entity and one day (one window). Then
the window items read per message for one entity-day of 1,000 and of 10,000 events, from real
runs (the 1-entity case itself when ``--events`` is one of them, else a run of that size).
The queue's own calls are not counted (ReceiveMessage + DeleteMessageBatch add 0.2 requests per
message); moto's SQS slows as a queue deepens (EMULATORS.md) and would measure moto.

    .venv/bin/python bench/processor.py [--events 10000] [--entities 100 --entities 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from consumers.ingest import Submission
from consumers.processor import AggregateDefinition, Processor
from infra.clock import FixedClock
from infra.local import EmbeddedAws
from pik.kit import build_kit
from pik.settings import Settings
from schemas.codec import Provenance
from schemas.envelope import parse_body

RESULTS = Path(__file__).resolve().parent / "results"
DEFINITIONS = (
    AggregateDefinition("daily_event_count"),
    AggregateDefinition("daily_steps", kind="sum", field="steps"),
)
BATCH = 10
SCALING_EVENTS = (1_000, 10_000)  # events per entity-day for the window-reads figure
TARGET_SPEED_RATIO = 0.5  # one entity-day's msg/s at least half the 100 entities'
TARGET_REQUESTS_PER_1K = 150


class CountingIndex:
    """The index the processor reads windows through, counting the items it returns."""

    def __init__(self, index: Any) -> None:
        self._index = index
        self.items_read = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)

    def select(self, *args: Any, **kwargs: Any) -> Any:
        for page in self._index.select(*args, **kwargs):
            self.items_read += len(page.items)
            yield page

    def get(self, event_id: str) -> Any:
        item = self._index.get(event_id)
        self.items_read += item is not None
        return item


def days_for(entities: int) -> int:
    return 1 if entities == 1 else 2


def run(events: int, entities: int) -> dict[str, Any]:
    days = days_for(entities)
    clock = FixedClock(datetime(2025, 12, 30, tzinfo=UTC))
    with EmbeddedAws(port=0) as server:
        # moto's state is per process: a case's own names keep the cases apart.
        tag = f"{entities}x{events}"
        settings = Settings(
            endpoint_url=server.endpoint_url,
            bucket=f"pik-raw-{tag}",
            events_table=f"pik-events-{tag}",
            aggregates_table=f"pik-aggregates-{tag}",
        )
        kit = build_kit(settings, clock=clock)
        kit.bootstrap().run(demo_stream=False)
        bodies = [
            json.dumps(
                {
                    "source": "bench",
                    "event_type": "heartbeat",
                    "entity_id": f"user_{n % entities:03d}",
                    "event_time": f"2025-12-2{8 + n % days}T{n % 24:02d}:{n % 60:02d}:{n % 59:02d}Z",
                    "payload": {"steps": n % 100, "n": n},
                }
            ).encode()
            for n in range(events)
        ]
        messages: list[dict[str, Any]] = []
        for start in range(0, events, 500):
            chunk = bodies[start : start + 500]
            subs = [
                Submission(b, Provenance(f"bench:{start + i}", "http"), parse_body(b), str(i))
                for i, b in enumerate(chunk)
            ]
            for body, result in zip(chunk, kit.sink.ingest(subs, label=f"b{start}"), strict=True):
                doc = json.loads(body)
                assert result.archive is not None, result
                messages.append(
                    {
                        "replay_id": "bench-replay",
                        "event_id": result.event_id,
                        "entity_id": doc["entity_id"],
                        "source": doc["source"],
                        "event_type": doc["event_type"],
                        "event_time": doc["event_time"],
                        "status": "ACCEPTED",
                        "archive": result.archive.to_json(),
                    }
                )
        messages.sort(key=lambda m: (m["entity_id"], m["event_time"]))  # replay order
        fresh = build_kit(settings, clock=clock)  # own clients, so only its calls are counted
        counter: Counter[str] = Counter()
        for client in (fresh.clients.dynamodb(), fresh.clients.s3()):

            def hook(event_name: str = "", **_: Any) -> None:
                counter[".".join(event_name.split(".")[1:3])] += 1  # before-send.<svc>.<Op>

            client.meta.events.register("before-send", hook)
        store = fresh.aggregates()
        index = CountingIndex(fresh.index)
        processor = Processor(
            index, fresh.archive, store, clock, fresh.metrics, definitions=DEFINITIONS
        )
        started = time.perf_counter()
        written = unchanged = failed = 0
        for i in range(0, len(messages), BATCH):
            batch = [(f"m{i + j}", json.dumps(m)) for j, m in enumerate(messages[i : i + BATCH])]
            outcome = processor.process(batch)
            written += len(outcome.written)
            unchanged += outcome.unchanged
            failed += len(outcome.failed)
        seconds = time.perf_counter() - started
        by_operation = dict(sorted(counter.items()))  # the processor's, not the check's below
        final = {(v.entity_id, v.day, v.metric): v for v in _all_versions(store, entities)}
    requests = sum(by_operation.values())
    counts = [v.value for (_, _, m), v in final.items() if m == "daily_event_count"]
    return {
        "benchmark": "processor",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "events": events,
        "entities": entities,
        "days": days,
        "events_per_window": round(events / max(len(counts), 1), 1),
        "messages": len(messages),
        "batch": BATCH,
        "seconds": round(seconds, 2),
        "messages_per_s": round(len(messages) / seconds, 1),
        "aws_requests": requests,
        "requests_per_1k_messages": round(requests / len(messages) * 1000, 1),
        "requests_by_operation": by_operation,
        "window_items_read": index.items_read,
        "window_items_read_per_message": round(index.items_read / len(messages), 3),
        "versions_written": written,
        "unchanged": unchanged,
        "failed": failed,
        "windows": len(counts),
        "correct": failed == 0 and sum(c or 0 for c in counts) == events,
        "backend": "embedded moto server in this process (client and server share the CPU)",
    }


def _all_versions(store: Any, entities: int) -> list[Any]:
    return [v for e in range(entities) for v in store.versions(f"user_{e:03d}")]


def compare(cases: list[dict[str, Any]], scaling: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, where the cases they need were run."""
    by_entities = {c["entities"]: c for c in cases}
    out: dict[str, Any] = {
        "requests_per_1k_ok": all(
            c["requests_per_1k_messages"] <= TARGET_REQUESTS_PER_1K for c in cases
        ),
        "window_items_read_per_message": {
            str(n): r["window_items_read_per_message"] for n, r in sorted(scaling.items())
        },
        "window_items_read_source": "real runs: one entity, one day, that many events",
    }
    if 1 in by_entities and 100 in by_entities:
        ratio = by_entities[1]["messages_per_s"] / by_entities[100]["messages_per_s"]
        out["speed_ratio_1_vs_100"] = round(ratio, 3)
        out["speed_ratio_ok"] = ratio >= TARGET_SPEED_RATIO
    return out


ROWS = (
    "events",
    "entities",
    "days",
    "events_per_window",
    "messages",
    "seconds",
    "messages_per_s",
    "aws_requests",
    "requests_per_1k_messages",
    "window_items_read_per_message",
    "versions_written",
    "unchanged",
    "failed",
    "windows",
    "correct",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument(
        "--entities", type=int, action="append", help="a case (repeatable; default: 100 and 1)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cases = [run(args.events, n) for n in (args.entities or [100, 1])]
    single = {c["events"]: c for c in cases if c["entities"] == 1}
    scaling = {n: single[n] if n in single else run(n, 1) for n in SCALING_EVENTS}
    result: dict[str, Any] = {
        "benchmark": "processor",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cases": cases,
        "scaling": {str(n): r for n, r in scaling.items()},
        "targets": compare(cases, scaling),
        "backend": "embedded moto server in this process (client and server share the CPU)",
    }
    RESULTS.mkdir(exist_ok=True)
    text = json.dumps(result, indent=2)
    stamp = result["time"].replace("-", "").replace(":", "")
    (RESULTS / f"processor-{stamp}.json").write_text(text + "\n")
    (RESULTS / "processor-latest.json").write_text(text + "\n")
    if args.json:
        print(text)
    else:
        print(f"{'':32}" + "".join(f"{c['entities']:>14} ent." for c in cases))
        for key in ROWS:
            print(f"{key:32}" + "".join(f"{c[key]!s:>19}" for c in cases))
        for c in cases:
            print(f"requests by operation ({c['entities']} ent.)", c["requests_by_operation"])
        targets = result["targets"]
        for n, per in targets["window_items_read_per_message"].items():
            print(f"window items read per message, {n} events per entity-day (real run): {per}")
        if "speed_ratio_1_vs_100" in targets:
            ok = "PASS" if targets["speed_ratio_ok"] else "FAIL"
            print(
                f"msg/s 1 entity-day / 100 entities: {targets['speed_ratio_1_vs_100']} "
                f"(target >= {TARGET_SPEED_RATIO}) {ok}"
            )
        ok = "PASS" if targets["requests_per_1k_ok"] else "FAIL"
        print(f"AWS requests per 1,000 messages <= {TARGET_REQUESTS_PER_1K} in every case: {ok}")
    return 0 if all(c["correct"] for c in [*cases, *scaling.values()]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
