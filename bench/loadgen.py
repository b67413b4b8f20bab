"""An HTTP load generator for the kit's ingest API, meant to run as its own process.

    .venv/bin/python bench/loadgen.py --url http://127.0.0.1:8080 --duration 30 \
        [--concurrency 8] [--batch 0] [--token T] [--ids-out FILE] [--json]

Each of ``--concurrency`` threads keeps one HTTP/1.1 connection open and sends, back to back
until ``--duration`` seconds have passed, either one event per ``POST /ingest`` (``--batch 0``)
or ``--batch`` events per ``POST /ingest/batch`` (NDJSON). Every event is distinct. It reports
requests and events per second, latency percentiles, the error rate (5xx, transport errors, and
any answer that is not the expected 200), and writes the event ids the server acknowledged to
``--ids-out`` so a caller can check they were really indexed.

Standard library only: the generator must cost the machine as little as possible.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

ENTITIES = 100


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)
    events_sent: int = 0
    events_acknowledged: int = 0
    event_ids: list[str] = field(default_factory=list)


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def event(run: str, worker: int, n: int) -> bytes:
    doc = {
        "source": "loadgen",
        "event_type": "tick",
        "entity_id": f"user_{(worker * 7919 + n) % ENTITIES:03d}",
        "event_time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "payload": {"run": run, "worker": worker, "n": n, "steps": n % 100},
        "idempotency_key": f"{run}-{worker}-{n}",
    }
    return json.dumps(doc, separators=(",", ":")).encode()


class Worker(threading.Thread):
    def __init__(
        self, url: str, run: str, number: int, batch: int, deadline: float, token: str | None
    ) -> None:
        super().__init__(name=f"loadgen-{number}", daemon=True)
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.run_id = run
        self.number = number
        self.batch = batch
        self.deadline = deadline
        self.headers = {"Content-Type": "application/x-ndjson" if batch else "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.tally = Tally()
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        return self._conn

    def run(self) -> None:
        n = 0
        path = "/ingest/batch" if self.batch else "/ingest"
        while time.monotonic() < self.deadline:
            size = self.batch or 1
            body = b"\n".join(event(self.run_id, self.number, n + i) for i in range(size))
            n += size
            self.tally.events_sent += size
            started = time.perf_counter()
            try:
                conn = self._connection()
                conn.request("POST", path, body=body, headers=self.headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.tally.codes[type(exc).__name__] += 1
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                time.sleep(0.05)
                continue
            self.tally.latencies_ms.append((time.perf_counter() - started) * 1000)
            self.tally.codes[str(response.status)] += 1
            if response.status == 200:
                self._acknowledge(data)

    def _acknowledge(self, data: bytes) -> None:
        doc = json.loads(data)
        results = doc["results"] if self.batch else [doc]
        for result in results:
            if result.get("status") in ("ACCEPTED", "DUPLICATE"):
                self.tally.events_acknowledged += 1
                self.tally.event_ids.append(str(result["event_id"]))


def run_load(
    url: str, *, duration: float, concurrency: int, batch: int, token: str | None
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    started = time.monotonic()
    workers = [Worker(url, run, i, batch, started + duration, token) for i in range(concurrency)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - started
    latencies = [ms for w in workers for ms in w.tally.latencies_ms]
    codes: Counter[str] = Counter()
    for w in workers:
        codes.update(w.tally.codes)
    requests = sum(codes.values())
    errors = requests - codes["200"]
    events_sent = sum(w.tally.events_sent for w in workers)
    acknowledged = sum(w.tally.events_acknowledged for w in workers)

    def ms(value: float | None) -> float | None:
        return round(value, 1) if value is not None else None

    return {
        "url": url,
        "run": run,
        "mode": f"POST /ingest/batch x{batch}" if batch else "POST /ingest",
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "requests": requests,
        "events_sent": events_sent,
        "events_acknowledged": acknowledged,
        "requests_per_s": round(requests / elapsed, 1),
        "events_per_s": round(acknowledged / elapsed, 1),
        "latency_ms": {
            "p50": ms(percentile(latencies, 0.50)),
            "p90": ms(percentile(latencies, 0.90)),
            "p99": ms(percentile(latencies, 0.99)),
            "max": ms(max(latencies) if latencies else None),
        },
        "errors": errors,
        "error_rate": round(errors / requests, 4) if requests else None,
        "answers": dict(sorted(codes.items())),
        "event_ids": [e for w in workers for e in w.tally.event_ids],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="Base URL of the HTTP API.")
    parser.add_argument("--duration", type=float, default=30.0, help="Seconds to send for.")
    parser.add_argument("--concurrency", type=int, default=8, help="Connections (threads).")
    parser.add_argument(
        "--batch", type=int, default=0, help="Events per /ingest/batch; 0: /ingest."
    )
    parser.add_argument("--token", default=None, help="Bearer token (PIK_API_TOKEN).")
    parser.add_argument("--ids-out", default=None, help="Write acknowledged event ids here.")
    parser.add_argument("--json", action="store_true", help="Print one JSON document.")
    args = parser.parse_args(argv)
    report = run_load(
        args.url,
        duration=args.duration,
        concurrency=args.concurrency,
        batch=args.batch,
        token=args.token,
    )
    ids = report.pop("event_ids")
    if args.ids_out:
        with open(args.ids_out, "w") as out:
            out.write("\n".join(ids) + ("\n" if ids else ""))
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        lat = report["latency_ms"]
        sys.stdout.write(
            f"{report['mode']}: {report['requests']} requests in {report['seconds']} s, "
            f"{report['requests_per_s']} req/s, {report['events_per_s']} events/s, "
            f"p50 {lat['p50']} ms, p99 {lat['p99']} ms, error rate {report['error_rate']}\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
