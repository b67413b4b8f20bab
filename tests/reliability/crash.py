"""Scenario 3, crash: ``pik serve``, ``pik process --once`` and ``pik tap`` SIGKILLed at random
points while work flows; afterwards nothing is lost and nothing is counted twice.

The processes are the real commands, started as subprocesses against a backend reached over
HTTP (a ``pik local`` subprocess in the bench, the suite's embedded server in pytest). Clients
behave as careful producers do: the same request (same ``X-Request-Id``) is sent again after a
connection error or a 5xx, until it is answered.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from consumers.processor import AggregateDefinition
from pik.kit import Kit
from pik.settings import Settings
from tests.reliability.fault_runs import (
    DEFINITIONS,
    check_aggregates,
    enqueue,
    queue_depth,
    replay_messages,
)
from tests.reliability.support import (
    PIK,
    Figures,
    audit,
    env_for,
    identity_of,
    kit_with,
    known_event,
    settings_for,
    timed,
)

READY_TIMEOUT_S = 60.0
# ``pik process`` receives with a 120 s visibility timeout (infra/resources.py), so a batch held
# by a killed processor comes back only after two minutes. The short form runs the very same
# command with that constant shortened, so a test can wait for it; the bench runs it unchanged.
SHORT_VISIBILITY_LAUNCHER = (
    "import sys, infra.resources as r; r.REPLAY_VISIBILITY_TIMEOUT_S = int(sys.argv[1]); "
    "sys.argv = ['pik', *sys.argv[2:]]; from pik.cli import main; main()"
)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = READY_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return False


def kill_hard(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(30)


@contextmanager
def pik_local(port: int | None = None) -> Iterator[str]:
    """A ``pik local`` subprocess (the embedded AWS) for the bench; yields its endpoint URL."""
    port = port or free_port()
    proc = subprocess.Popen(
        [PIK, "local", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_ready(f"{url}/moto-api/config", proc):
            raise RuntimeError("pik local did not start")
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            kill_hard(proc)


# -- pik serve --------------------------------------------------------------------------------
class Sender:
    """Sends known events, one request each, until every one is answered below 500."""

    def __init__(self, base_url: str, bodies: list[bytes], run: str, concurrency: int) -> None:
        self.base_url = base_url
        self.bodies = bodies
        self.run = run
        self.concurrency = concurrency
        self.answers: dict[int, tuple[int, str]] = {}
        self.errors: Counter[str] = Counter()
        self.requests = 0
        self._lock = threading.Lock()

    def send_all(self, give_up_at: float) -> None:
        with ThreadPoolExecutor(self.concurrency) as pool:
            list(pool.map(lambda n: self._send(n, give_up_at), range(len(self.bodies))))

    def _send(self, n: int, give_up_at: float) -> None:
        headers = {"x-request-id": f"{self.run}-{n}", "content-type": "application/json"}
        with httpx.Client(base_url=self.base_url, timeout=30.0) as client:
            delay = 0.02
            while time.monotonic() < give_up_at:
                with self._lock:
                    self.requests += 1
                try:
                    response = client.post("/ingest", content=self.bodies[n], headers=headers)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.errors[type(exc).__name__] += 1
                else:
                    if response.status_code < 500:
                        status = str(response.json().get("status"))
                        with self._lock:
                            self.answers[n] = (response.status_code, status)
                        return
                    with self._lock:
                        self.errors[str(response.status_code)] += 1
                time.sleep(delay)
                delay = min(0.5, delay * 2)


def serve_crash(
    endpoint_url: str, *, events: int, kills: int, seed: int = 3, concurrency: int = 6
) -> Figures:
    """``pik serve`` SIGKILLed ``kills`` times at random moments while clients send ``events``
    known events; then each is indexed exactly once (never as a duplicate of itself) and
    archived at least once."""
    figures = Figures(f"crash: pik serve SIGKILLed x{kills}")
    rng = random.Random(seed)
    settings = settings_for(endpoint_url)
    kit = kit_with(settings)
    kit.bootstrap().run(demo_stream=False)
    run = uuid.uuid4().hex[:8]
    bodies = [known_event(run, n) for n in range(events)]
    port = free_port()
    sender = Sender(f"http://127.0.0.1:{port}", bodies, run, concurrency)
    env = env_for(settings)
    done = kills_made = starts = 0
    with timed(figures):
        flow = threading.Thread(target=sender.send_all, args=(time.monotonic() + 600,))
        flow.start()
        while flow.is_alive():
            proc = subprocess.Popen(
                [PIK, "serve", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            starts += 1
            if not wait_ready(f"http://127.0.0.1:{port}/healthz", proc):
                kill_hard(proc)
                figures.fail("pik serve did not start")
                break
            if kills_made < kills:
                time.sleep(rng.uniform(0.05, 1.5))
                before = len(sender.answers)
                kill_hard(proc)
                kills_made += 1
                done += len(sender.answers) - before
                continue
            flow.join()
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                kill_hard(proc)
        flow.join()
        result = audit(kit, {identity_of(b) for b in bodies})
    statuses = Counter(status for _, status in sender.answers.values())
    figures.tried = events
    figures.survived = result.indexed_once - len(result.duplicates_indexed)
    figures.lost = result.lost
    if len(sender.answers) != events:
        figures.fail(f"{events - len(sender.answers)} events never answered")
    if statuses.keys() - {"ACCEPTED"}:
        figures.fail(f"answers other than ACCEPTED: {dict(statuses)}")
    if result.duplicates_indexed:
        figures.fail(f"retries indexed as duplicates: {result.duplicates_indexed[:5]}")
    if 0 in result.archive_copies:
        figures.fail("an indexed event has no archived record")
    figures.notes.update(
        {
            "kills": kills_made,
            "starts": starts,
            "http_requests": sender.requests,
            "client_errors": dict(sender.errors),
            "audit": result.to_json(),
        }
    )
    return figures


# -- pik process --once -----------------------------------------------------------------------
def _config_toml(definitions: tuple[AggregateDefinition, ...]) -> str:
    lines = []
    for d in definitions:
        lines.append("[[aggregate]]")
        for key, value in d.to_json().items():
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def processor_crash(
    endpoint_url: str,
    *,
    events: int,
    kills: int,
    workdir: Path,
    seed: int = 4,
    visibility_s: int | None = 3,
    deadline_s: float = 600.0,
) -> Figures:
    """``pik process --once`` SIGKILLed ``kills`` times mid-drain, then run to the end; every
    aggregate then equals a from-scratch recomputation, its versions chain without gaps or
    repeats, and nothing reached the dead-letter queue. ``visibility_s`` None runs the command
    unchanged (a killed batch comes back after 120 s)."""
    label = "pik process --once" if visibility_s is None else "pik process --once (short vis.)"
    figures = Figures(f"crash: {label} SIGKILLed x{kills} (aggregates)")
    rng = random.Random(seed)
    settings = settings_for(endpoint_url)
    kit = kit_with(settings)
    kit.bootstrap().run(demo_stream=False)
    run = uuid.uuid4().hex[:8]
    bodies = [known_event(run, n, entities=5) for n in range(events)]
    messages = replay_messages(kit, bodies, run)
    sqs = kit.clients.sqs()
    queue_url = sqs.get_queue_url(QueueName=settings.replay_queue)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=settings.replay_dlq)["QueueUrl"]
    enqueue(kit, queue_url, messages + messages)
    config = workdir / f"aggregates-{run}.toml"
    config.write_text(_config_toml(DEFINITIONS))
    env = env_for(settings, PIK_CONFIG=str(config))
    if visibility_s is None:
        command = [PIK, "process", "--once", "--wait", "1", "--json"]
    else:
        launcher = [sys.executable, "-c", SHORT_VISIBILITY_LAUNCHER, str(visibility_s)]
        command = [*launcher, "process", "--once", "--wait", "1", "--json"]
    kills_made = runs = 0
    exits: Counter[int] = Counter()
    with timed(figures):
        stop_at = time.monotonic() + deadline_s
        while time.monotonic() < stop_at:
            proc = subprocess.Popen(
                command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            runs += 1
            if kills_made < kills:
                time.sleep(rng.uniform(1.0, 4.0))  # ~1-2 s to start, then mid-drain
                if proc.poll() is None:
                    kill_hard(proc)
                    kills_made += 1
                    continue
            exits[proc.wait()] += 1
            if queue_depth(kit, queue_url) == 0 and kills_made >= kills:
                break
            time.sleep(1.0)  # messages held by a killed run come back after the visibility
        left = queue_depth(kit, queue_url)
        dead = queue_depth(kit, dlq_url)
        check_aggregates(kit, bodies, DEFINITIONS, figures)
    if left:
        figures.fail(f"{left} messages still queued after {deadline_s:.0f} s")
    if dead:
        figures.lost += dead
        figures.fail(f"{dead} messages in the dead-letter queue")
    if set(exits) - {0}:
        figures.fail(f"pik process exited with {dict(exits)}")
    figures.notes.update(
        {"kills": kills_made, "runs": runs, "messages": 2 * len(messages), "exits": dict(exits)}
    )
    return figures


# -- pik tap ---------------------------------------------------------------------------------
def tap_crash(
    kit: Kit, settings: Settings, *, records: int, kills: int, workdir: Path, seed: int = 5
) -> Figures:
    """``pik tap`` SIGKILLed while a producer writes (5 % producer retries): afterwards every
    record is indexed exactly once and the duplicates are exactly the producer's retries
    (tests/integration/test_tap_crash.py is the short form; this is the long one)."""
    from consumers.tap.decode import RecordDecoder, StreamRecord
    from infra.clock import SystemClock
    from infra.kinesis_boto import BotoKinesis
    from pik.config import load_config
    from producers.produce import BINDING_TOML, Produced, Producer, ProduceSpec
    from schemas.envelope import Event
    from schemas.identity import event_id

    figures = Figures(f"crash: pik tap SIGKILLed x{kills}")
    rng = random.Random(seed)
    stream = f"crash-{uuid.uuid4().hex[:8]}"
    kinesis = kit.clients.kinesis()
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})
    config = workdir / f"tap-{stream}.toml"
    config.write_text(BINDING_TOML.format(stream=stream))
    env = env_for(settings, PIK_CONFIG=str(config))
    tap = [PIK, "tap", "--stream", stream, "--lease-seconds", "1", "--json"]
    produced: list[Produced] = []
    spec = ProduceSpec(count=records, rate=max(50.0, records / 30), duplicates=0.05, seed=seed)
    producer = Producer(BotoKinesis(kinesis), SystemClock())
    kills_made = 0
    with timed(figures):
        flow = threading.Thread(target=producer.run, args=(stream, spec), kwargs={"keep": produced})
        flow.start()
        while flow.is_alive() or kills_made < kills:
            proc = subprocess.Popen(
                tap, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(rng.uniform(0.8, 2.5))
            kill_hard(proc)
            kills_made += 1
        flow.join()
        time.sleep(1.2)  # the killed workers' leases expire
        final = subprocess.run([*tap, "--once"], env=env, capture_output=True, timeout=600)
        if final.returncode != 0:
            figures.fail(f"final tap --once failed: {final.stderr.decode()[-500:]}")
        binding = load_config(config).taps[0]
        decoder = RecordDecoder(binding)
        ids = []
        for p in produced:
            if p.kind != "ok":
                continue
            record = StreamRecord(stream, "s", "1", p.partition_key, SystemClock().now(), p.body)
            (sub,) = decoder.submissions(record)
            if isinstance(sub.parsed, Event):
                ids.append(event_id(sub.parsed))
        retries = sum(p.kind == "duplicate" for p in produced)
        found = kit.index.lookup(ids)
        duplicates = sum(len(h.dup_occurrences) for h in found.values())
    figures.scenario = f"crash: pik tap SIGKILLed x{kills_made}"
    figures.tried = len(ids)
    figures.survived = len(found)
    figures.lost = len(set(ids) - set(found))
    if duplicates != retries:
        figures.fail(f"{duplicates} duplicates indexed for {retries} producer retries")
    figures.notes.update(
        {"kills": kills_made, "producer_retries": retries, "duplicates_indexed": duplicates}
    )
    return figures
