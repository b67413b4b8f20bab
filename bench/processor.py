"""Processor benchmark: messages/s and AWS requests per 1,000 messages.

A replay of 10,000 events across 100 entities (two days each) is fed to the processor in
batches of 10, exactly as an SQS event source mapping hands them to the Lambda handler. The
queue's own calls are not counted here (ReceiveMessage + DeleteMessageBatch add 0.2 requests
per message); moto's SQS slows as a queue deepens (EMULATORS.md) and would measure moto.

    .venv/bin/python bench/processor.py [--events 10000] [--entities 100] [--json]
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
TARGET_NOTE = "no target in the issue: figures for the record"


def run(events: int, entities: int) -> dict[str, Any]:
    clock = FixedClock(datetime(2025, 12, 30, tzinfo=UTC))
    with EmbeddedAws(port=0) as server:
        settings = Settings(endpoint_url=server.endpoint_url)
        kit = build_kit(settings, clock=clock)
        kit.bootstrap().run(demo_stream=False)
        bodies = [
            json.dumps(
                {
                    "source": "bench",
                    "event_type": "heartbeat",
                    "entity_id": f"user_{n % entities:03d}",
                    "event_time": f"2025-12-2{8 + n % 2}T{n % 24:02d}:{n % 60:02d}:{n % 59:02d}Z",
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
                assert result.archive is not None
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
        processor = Processor(
            fresh.index, fresh.archive, store, clock, fresh.metrics, definitions=DEFINITIONS
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
        final = {(v.entity_id, v.day, v.metric): v for v in _all_versions(store, entities)}
    requests = sum(counter.values())
    counts = [v.value for (_, _, m), v in final.items() if m == "daily_event_count"]
    return {
        "benchmark": "processor",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "events": events,
        "entities": entities,
        "messages": len(messages),
        "batch": BATCH,
        "seconds": round(seconds, 2),
        "messages_per_s": round(len(messages) / seconds, 1),
        "aws_requests": requests,
        "requests_per_1k_messages": round(requests / len(messages) * 1000, 1),
        "requests_by_operation": dict(sorted(counter.items())),
        "versions_written": written,
        "unchanged": unchanged,
        "failed": failed,
        "windows": len(counts),
        "correct": failed == 0 and sum(c or 0 for c in counts) == events,
        "note": TARGET_NOTE,
        "backend": "embedded moto server in this process (client and server share the CPU)",
    }


def _all_versions(store: Any, entities: int) -> list[Any]:
    return [v for e in range(entities) for v in store.versions(f"user_{e:03d}")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--entities", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.events, args.entities)
    RESULTS.mkdir(exist_ok=True)
    text = json.dumps(result, indent=2)
    (RESULTS / "processor-latest.json").write_text(text + "\n")
    if args.json:
        print(text)
    else:
        for key in (
            "events",
            "entities",
            "messages",
            "seconds",
            "messages_per_s",
            "aws_requests",
            "requests_per_1k_messages",
            "versions_written",
            "unchanged",
            "failed",
            "windows",
            "correct",
        ):
            print(f"{key:26} {result[key]}")
        print("requests by operation     ", result["requests_by_operation"])
    return 0 if result["correct"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
