"""Scenario 4, load: ``bench/loadgen.py`` in a second process drives ``pik serve`` on loopback
for a bounded time; the server's RSS is sampled meanwhile; afterwards every event the server
acknowledged is looked up in the index (acknowledged but not indexed = lost)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.reliability.crash import free_port, kill_hard, wait_ready
from tests.reliability.support import (
    PIK,
    Figures,
    chunks,
    env_for,
    kit_with,
    rss_kib,
    settings_for,
    timed,
)

LOADGEN = Path(__file__).resolve().parents[2] / "bench" / "loadgen.py"
RSS_EVERY_S = 0.5


class RssSampler(threading.Thread):
    """RSS of one process every ``RSS_EVERY_S`` seconds, as (seconds since start, MiB)."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop.wait(RSS_EVERY_S):
            kib = rss_kib(self.pid)
            if kib is None:
                return
            self.samples.append((round(time.monotonic() - started, 1), round(kib / 1024, 1)))

    def summary(self, points: int = 12) -> dict[str, object]:
        mib = [m for _, m in self.samples]
        step = max(1, len(self.samples) // points)
        return {
            "start_mib": mib[0] if mib else None,
            "max_mib": max(mib) if mib else None,
            "end_mib": mib[-1] if mib else None,
            "series": self.samples[::step],
        }


def load_run(
    endpoint_url: str,
    *,
    duration: float,
    concurrency: int = 8,
    batch: int = 0,
    token: str | None = None,
) -> Figures:
    mode = f"/ingest/batch x{batch}" if batch else "/ingest"
    figures = Figures(f"load: {mode}, {concurrency} connections, {duration:.0f} s")
    overrides = {"api_token": token} if token else {}
    settings = settings_for(endpoint_url, **overrides)
    kit = kit_with(settings)
    kit.bootstrap().run(demo_stream=False)
    port = free_port()
    extra = {"PIK_API_TOKEN": token} if token else {}
    server = subprocess.Popen(
        [PIK, "serve", "--port", str(port)],
        env=env_for(settings, **extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with timed(figures), tempfile.TemporaryDirectory() as tmp:
        try:
            if not wait_ready(f"http://127.0.0.1:{port}/healthz", server):
                figures.fail("pik serve did not start")
                return figures
            sampler = RssSampler(server.pid)
            sampler.start()
            ids_file = Path(tmp) / "ids.txt"
            command = [
                sys.executable,
                str(LOADGEN),
                "--url",
                f"http://127.0.0.1:{port}",
                "--duration",
                str(duration),
                "--concurrency",
                str(concurrency),
                "--batch",
                str(batch),
                "--ids-out",
                str(ids_file),
                "--json",
            ]
            if token:
                command += ["--token", token]
            done = subprocess.run(command, capture_output=True, timeout=duration + 120)
            sampler.stop.set()
            sampler.join()
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                kill_hard(server)
        if done.returncode != 0:
            figures.fail(f"loadgen failed: {done.stderr.decode()[-500:]}")
            return figures
        report = json.loads(done.stdout)
        ids = [line for line in ids_file.read_text().splitlines() if line]
        found: set[str] = set()
        for part in chunks(sorted(set(ids)), 1000):
            found.update(kit.index.lookup(list(part)))
    figures.tried = report["events_sent"]
    figures.survived = len(found)
    figures.lost = len(set(ids) - found)
    # Events in requests that failed were never acknowledged: a client would retry them. Only
    # an acknowledged event that is not indexed is lost; errors are reported as a rate.
    unanswered = report["events_sent"] - report["events_acknowledged"]
    figures.tried -= unanswered
    if report["errors"]:
        figures.fail(f"{report['errors']} requests failed: {report['answers']}")
    figures.notes.update(
        {
            "requests": report["requests"],
            "requests_per_s": report["requests_per_s"],
            "events_per_s": report["events_per_s"],
            "latency_ms": report["latency_ms"],
            "error_rate": report["error_rate"],
            "answers": report["answers"],
            "events_unacknowledged": unanswered,
            "server_rss": sampler.summary(),
        }
    )
    return figures
