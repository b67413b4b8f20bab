"""`pik produce` and `pik tap` as a user runs them, against `pik local`: --once twice, bad usage,
SIGTERM. (The SIGKILL crash test is tests/integration/test_tap_crash.py.)"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.aws import AwsClients, AwsConfig
from pik.kit import Kit
from tests.e2e.conftest import PIK, base_env, free_port, run_pik, running

STREAM = "pik-demo"  # made by `pik bootstrap`: an existing stream as far as the tap knows


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One `pik local` for the module; each test reads on from the checkpoints before it."""
    tmp_path = tmp_path_factory.mktemp("tap-cli")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = base_env(AWS_ENDPOINT_URL=endpoint)
    with running("local", "--port", str(port), env=env, ready_url=f"{endpoint}/moto-api/config"):
        config = tmp_path / "pik.toml"
        made = run_pik("produce", "--stream", STREAM, "--print-binding", env=env)
        config.write_bytes(made.stdout)
        env["PIK_CONFIG"] = str(config)
        assert run_pik("bootstrap", env=env).returncode == 0
        yield env


def pik_json(*args: str, env: dict[str, str]) -> dict[str, Any]:
    done = run_pik(*args, "--json", env=env)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def test_produce_then_tap_once_twice(local: dict[str, str]) -> None:
    made = pik_json(
        "produce",
        "--stream",
        STREAM,
        "--count",
        "150",
        "--duplicates",
        "5%",
        "--bad",
        "4%",
        "--late",
        "10%",
        "--seed",
        "5",
        env=local,
    )
    kpl = pik_json(
        "produce", "--stream", STREAM, "--count", "100", "--kpl", "--seed", "6", env=local
    )
    first = pik_json("tap", "--stream", STREAM, "--once", env=local)
    assert first["user_records"] == 250
    assert first["records"] == made["kinesis_records"] + kpl["kinesis_records"]
    assert first["accepted"] == made["expected"]["accepted"] + 100
    assert first["duplicates"] == made["expected"]["duplicate"]
    assert first["rejected"] == made["expected"]["rejected"]
    assert first["millis_behind_latest"] == 0
    assert {s["shard_id"] for s in first["shards"]} == {
        "shardId-000000000000",
        "shardId-000000000001",
    }
    second = pik_json("tap", "--stream", STREAM, "--once", env=local)
    assert second["records"] == 0 and second["accepted"] == 0

    human = run_pik("tap", "--stream", STREAM, "--once", env=local)
    assert human.returncode == 0 and b"read 0 records" in human.stdout

    # bad usage exits non-zero with one line
    bad_from = run_pik("tap", "--stream", STREAM, "--from", "yesterday", "--once", env=local)
    assert bad_from.returncode == 2
    assert bad_from.stderr.decode().strip().count("\n") == 0
    missing = run_pik("tap", "--stream", "no-such-stream", "--once", env=local)
    assert missing.returncode == 1 and b"no-such-stream" in missing.stderr


def _tap(env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PIK, "tap", "--stream", STREAM, "--json", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def _leases(env: dict[str, str]) -> list[dict[str, Any]]:
    clients = AwsClients(AwsConfig(endpoint_url=env["AWS_ENDPOINT_URL"]))
    items: list[dict[str, Any]] = clients.dynamodb().scan(TableName="pik-leases")["Items"]
    return items


def _checkpointed(env: dict[str, str]) -> int:
    """moto's sequence numbers count up per shard, so this sums the records checkpointed."""
    return sum(int(i.get("checkpoint", {}).get("S", "0")) for i in _leases(env))


def test_sigterm_flushes_checkpoints_and_releases_leases(local: dict[str, str]) -> None:
    before = _checkpointed(local)
    pik_json("produce", "--stream", STREAM, "--count", "200", "--seed", "9", env=local)
    proc = _tap(local)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if _checkpointed(local) >= before + 200:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert json.loads(out)["accepted"] == 200
    assert all("lease_owner" not in item for item in _leases(local))


def test_efo_on_moto_fails_with_a_one_line_reason(kit: Kit) -> None:
    """moto lacks SubscribeToShard; the embedded backend answers 501 NotImplemented: `--efo`
    says so and how to go on, in one line, exits 2 (only the operator can fix it), and gives
    its leases up."""
    stream = f"existing-{uuid.uuid4().hex[:8]}"
    kinesis = kit.clients.kinesis()
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})
    env = base_env(
        AWS_ENDPOINT_URL=str(kit.settings.endpoint_url),
        PIK_BUCKET=kit.names.bucket,
        PIK_EVENTS_TABLE=kit.names.events_table,
        PIK_LEASES_TABLE=kit.names.leases_table,
    )

    done = run_pik("tap", "--stream", stream, "--efo", "--once", env=env)

    error = done.stderr.decode().strip()
    assert done.returncode == 2, error
    *logs, reason = error.splitlines()  # structured log lines (JSON), then the reason
    assert all(line.startswith("{") for line in logs) and "Traceback" not in error
    assert reason == (
        f"error: Kinesis SubscribeToShard on {stream}/shardId-000000000000 failed: HTTP 501 "
        "NotImplemented: The subscribe_to_shard action has not been implemented; enhanced "
        "fan-out needs an endpoint that implements SubscribeToShard (moto does not): run the tap "
        "without --efo"
    )
    leases = kit.clients.dynamodb().scan(TableName=kit.names.leases_table)["Items"]
    assert len(leases) == 1 and "lease_owner" not in leases[0]


def _one_error_line(done: subprocess.CompletedProcess[bytes]) -> str:
    """The one line a failed command says, after any structured (JSON) log lines."""
    error = done.stderr.decode()
    assert "Traceback" not in error and "Traceback" not in done.stdout.decode(), error
    *logs, reason = error.strip().splitlines()
    assert all(line.startswith("{") and "\\n" not in line for line in logs), error
    assert reason.startswith("error: "), error
    return reason


def test_efo_and_a_missing_stream_against_pik_local_are_one_line_each(
    local: dict[str, str],
) -> None:
    """Through `pik local` (the embedded backend in its own process, as a user runs it)."""
    efo = run_pik("tap", "--stream", STREAM, "--efo", "--once", env=local)
    assert efo.returncode == 2
    assert "HTTP 501 NotImplemented" in _one_error_line(efo)
    missing = run_pik("tap", "--stream", "no-such-stream", "--once", env=local)
    assert missing.returncode == 1
    assert "no-such-stream" in _one_error_line(missing)


def test_up_with_an_efo_tap_on_moto_logs_one_line_and_gives_that_tap_up(tmp_path: Path) -> None:
    """Under `pik up` the embedded backend is in the same process: moto's refusals must not
    print tracebacks, and a tap that cannot work there is marked failed once, not restarted."""
    api, aws = free_port(), free_port()
    config = tmp_path / "pik.toml"
    config.write_text(f'[[tap]]\nstream = "{STREAM}"\nefo = true\n')
    log = tmp_path / "up.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [PIK, "up", "--port", str(api), "--aws-port", str(aws)],
            env=base_env(PIK_CONFIG=str(config)),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline, health = time.monotonic() + 30, dict[str, str]()
            while time.monotonic() < deadline and health.get(f"tap:{STREAM}") != "failed":
                time.sleep(0.3)
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{api}/healthz", timeout=2)
                except urllib.error.HTTPError as answer:  # 503: degraded
                    health = json.loads(answer.read())["components"]
                except OSError:
                    pass
            assert health.get(f"tap:{STREAM}") == "failed", log.read_text()
            time.sleep(1)  # nothing restarts it
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    said = log.read_text()
    assert "Traceback" not in said, said[:3000]
    failures = [line for line in said.splitlines() if "component failed" in line]
    assert len(failures) == 1, said
    assert json.loads(failures[0])["reason"].startswith(
        f"Kinesis SubscribeToShard on {STREAM}/shardId-"
    )
    assert "not restarted" in failures[0]
