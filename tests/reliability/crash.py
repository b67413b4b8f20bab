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
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from consumers.processor import AggregateDefinition
from pik.kit import Kit
from tests.reliability.fault_runs import (
    DEFINITIONS,
    check_aggregates,
    enqueue,
    queue_depth,
    replay_messages,
)
from tests.reliability.reshard import merge_last_pair, split_first, wait_active
from tests.reliability.support import (
    KINESIS_LOCAL,
    MOTO,
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
    if result.rollups_off:
        figures.fail(f"rollups differ from a recount of the archive: {result.rollups_off[:3]}")
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
    repeats, and nothing reached the dead-letter queue. A batch a killed run held comes back
    after the visibility timeout: ``--visibility-timeout visibility_s``, or with None the
    default (120 s)."""
    label = "pik process --once" + (
        "" if visibility_s is None else f" --visibility-timeout {visibility_s}"
    )
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
    command = [PIK, "process", "--once", "--wait", "1", "--json"]
    if visibility_s is not None:
        command += ["--visibility-timeout", str(visibility_s)]
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
def leases(kit: Kit) -> dict[str, tuple[str | None, str | None]]:
    """Lease key → (owner, checkpoint), read with a Scan (the table holds a few items)."""
    pages = (
        kit.clients.dynamodb()
        .get_paginator("scan")
        .paginate(TableName=kit.names.leases_table, ConsistentRead=True)
    )
    return {
        i["lease_key"]["S"]: (
            i["lease_owner"]["S"] if "lease_owner" in i else None,
            i["checkpoint"]["S"] if "checkpoint" in i else None,
        )
        for p in pages
        for i in p["Items"]
    }


def wait_for_tap(
    kit: Kit,
    before: dict[str, tuple[str | None, str | None]],
    proc: subprocess.Popen[bytes],
    *,
    progress: bool,
    timeout: float = 30.0,
) -> bool:
    """Wait until the tap just started holds a lease (an owner not in ``before``) or, with
    ``progress``, has moved a checkpoint; False when it did not within ``timeout``."""
    owners = {owner for owner, _ in before.values()}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        now = leases(kit)
        if progress:
            if any(before.get(key, (None, None))[1] != cp for key, (_, cp) in now.items()):
                return True
        elif {owner for owner, _ in now.values()} - owners:
            return True
        time.sleep(0.1)
    return False


def tap_crash(
    endpoint_url: str,
    *,
    records: int,
    kills: int,
    workdir: Path,
    seed: int = 5,
    kinesis_endpoint: str | None = None,
    reshard: bool = False,
    write_s: float = 10.0,
    rounds: int = 20,
) -> Figures:
    """``pik tap`` SIGKILLed at random moments while a producer writes to a 2-shard stream (5 %
    producer retries), then run once to the end: every record is indexed exactly once and the
    duplicates are exactly the producer's retries (tests/integration/test_tap_crash.py is the
    short form on moto).

    ``kinesis_endpoint`` puts the stream on another Kinesis (npm kinesis-local: the archive,
    index and leases stay on ``endpoint_url``); ``reshard`` then splits a shard a third of the
    way through the writes and merges two a third later (moto cannot: it keeps writing to closed
    parents and never ends them), so killed taps leave parents half read under new children.
    """
    from consumers.tap.decode import RecordDecoder, StreamRecord
    from infra.clock import SystemClock
    from infra.kinesis_boto import BotoKinesis
    from pik.config import load_config
    from producers.produce import BINDING_TOML, Produced, Producer, ProduceSpec
    from schemas.envelope import Event
    from schemas.identity import event_id

    backend = KINESIS_LOCAL if kinesis_endpoint else MOTO
    figures = Figures(f"crash: pik tap SIGKILLed x{kills}", backend=backend)
    if reshard and not kinesis_endpoint:
        raise ValueError("resharding needs a faithful Kinesis (moto keeps writing to parents)")
    rng = random.Random(seed)
    settings = settings_for(endpoint_url)
    kit = kit_with(settings, kinesis_endpoint=kinesis_endpoint)
    kit.bootstrap().run(demo_stream=False)
    stream = f"crash-{uuid.uuid4().hex[:8]}"
    kinesis = kit.clients.kinesis()
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    wait_active(kinesis, stream)
    config = workdir / f"tap-{stream}.toml"
    config.write_text(BINDING_TOML.format(stream=stream))
    extra = {"AWS_ENDPOINT_URL_KINESIS": kinesis_endpoint} if kinesis_endpoint else {}
    env = env_for(settings, PIK_CONFIG=str(config), **extra)
    tap = [PIK, "tap", "--stream", stream, "--lease-seconds", "1", "--json"]
    produced: list[Produced] = []
    reshards: list[str] = []
    writer_errors: list[str] = []
    producer = Producer(BotoKinesis(kinesis), SystemClock())
    per_round = -(-records // rounds)

    def write() -> None:
        started = time.monotonic()
        try:
            for n in range(rounds):
                if reshard and n == rounds // 3:
                    reshards.append(f"split {split_first(kinesis, stream)}")
                if reshard and n == 2 * rounds // 3:
                    reshards.append(f"merge {merge_last_pair(kinesis, stream)}")
                count = min(per_round, records - n * per_round)
                if count <= 0:
                    break
                spec = ProduceSpec(count=count, duplicates=0.05, seed=seed * 1000 + n)
                producer.run(stream, spec, keep=produced)
                time.sleep(max(0.0, started + (n + 1) * write_s / rounds - time.monotonic()))
        except Exception as exc:  # reported as a failed check, not a crashed thread
            writer_errors.append(f"{type(exc).__name__}: {exc}")
        figures.notes["write_s"] = round(time.monotonic() - started, 1)

    kills_made = idle = 0
    with timed(figures):
        flow = threading.Thread(target=write, name="producer")
        flow.start()
        while flow.is_alive() or kills_made < kills:
            before = leases(kit)
            proc = subprocess.Popen(
                tap, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            # Killed at a random moment while it works, not while it is still importing (a
            # start takes 1-4 s on a busy 2-core machine): every other run shortly after it
            # takes a lease, possibly before its first checkpoint; the others after it moved
            # a checkpoint, so that some work is done by taps that are then killed.
            after_progress = kills_made % 2 == 1
            if wait_for_tap(kit, before, proc, progress=after_progress, timeout=10.0):
                time.sleep(rng.uniform(0.0, 1.5))
            else:
                idle += 1
            kill_hard(proc)
            kills_made += 1
        flow.join()
        time.sleep(1.2)  # the killed workers' leases expire
        final_started = time.monotonic()
        final = subprocess.run([*tap, "--once"], env=env, capture_output=True, timeout=600)
        figures.notes["final_run_s"] = round(time.monotonic() - final_started, 1)
        last: dict[str, Any] = {}
        if final.returncode != 0:
            figures.fail(f"final tap --once failed: {final.stderr.decode()[-500:]}")
        else:
            last = json.loads(final.stdout)
            figures.notes["final_run"] = {
                k: last.get(k) for k in ("user_records", "accepted", "duplicates", "redeliveries")
            }
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
        result = audit(kit, ids)
        found = kit.index.lookup(ids)
        duplicates = sum(len(h.dup_occurrences) for h in found.values())
    figures.scenario = f"crash: pik tap SIGKILLed x{kills_made}" + (
        ", split + merge" if reshard else ""
    )
    figures.tried = len(ids)
    figures.survived = result.indexed_once
    figures.lost = result.lost
    if result.rollups_off:
        figures.fail(f"rollups differ from a recount of the archive: {result.rollups_off[:3]}")
    if writer_errors:
        figures.fail(f"the producer stopped: {writer_errors[0]}")
    if len(set(ids)) != len(ids):
        figures.fail(f"{len(ids) - len(set(ids))} produced events share an identity")
    if duplicates != retries:
        figures.fail(f"{duplicates} duplicates indexed for {retries} producer retries")
    if result.unexpected:
        figures.fail(f"{result.unexpected} identities indexed that nobody sent")
    if reshard and len(reshards) != 2:
        figures.fail(f"expected a split and a merge, made {reshards}")
    shards = [s["ShardId"] for s in kinesis.list_shards(StreamName=stream)["Shards"]]
    figures.notes.update(
        {
            "kills": kills_made,
            "killed_idle": idle,  # no lease (or no progress) within 10 s: killed anyway
            "indexed_before_the_final_run": len(ids) - int(last.get("accepted") or 0),
            "producer_retries": retries,
            "duplicates_indexed": duplicates,
            "reshards": reshards,
            "shards": shards,
            "audit": result.to_json(),
        }
    )
    return figures
