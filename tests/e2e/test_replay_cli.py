"""`pik replay` and `pik replays ...` as an operator runs them: subprocesses against `pik local`,
exit codes, one-line errors, --json documents, Ctrl-C and resume."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import PIK, base_env, free_port, run_pik, running

WINDOW = ["--start", "2025-12-28T00:00:00Z", "--end", "2025-12-29T00:00:00Z"]


def event(minute: int, entity: str = "user_123") -> str:
    return json.dumps(
        {
            "source": "demo",
            "event_type": "heartbeat",
            "entity_id": entity,
            "event_time": f"2025-12-28T10:{minute:02d}:00Z",
            "payload": {"minute": minute},
        }
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`pik local` with bootstrapped resources and 10 + 2 events (one resent) ingested."""
    aws = free_port()
    endpoint = f"http://127.0.0.1:{aws}"
    with running("local", "--port", str(aws), env=base_env(), ready_url=f"{endpoint}/moto-api/"):
        env = base_env(AWS_ENDPOINT_URL=endpoint, USER="e2e-operator")
        assert run_pik("bootstrap", env=env).returncode == 0
        events = tmp_path_factory.mktemp("events") / "events.ndjson"
        lines = [event(m) for m in range(10)] + [event(0), event(1, entity="user_9")]
        events.write_text("\n".join(lines) + "\n")
        ingested = run_pik("ingest", str(events), "--json", env=env)
        assert ingested.returncode == 0, ingested.stderr
        assert json.loads(ingested.stdout)["duplicate"] == 1
        yield env


def pik_json(env: dict[str, str], *args: str) -> dict[str, object]:
    done = run_pik(*args, "--json", env=env)
    assert done.returncode == 0, done.stderr.decode()
    doc: dict[str, object] = json.loads(done.stdout)
    return doc


def test_dry_run_then_replay_to_a_file_then_the_jobs(env: dict[str, str], tmp_path: Path) -> None:
    dry = pik_json(env, "replay", "--entity-id", "user_123", *WINDOW, "--dry-run")
    assert (dry["dry_run"], dry["matched"], dry["sent"]) == (True, 10, 0)
    from_env = pik_json({**env, "DRY_RUN": "true"}, "replay", "--entity-id", "user_123", *WINDOW)
    assert from_env["dry_run"] is True and from_env["sent"] == 0

    out = tmp_path / "replay.ndjson"
    doc = pik_json(
        env,
        "replay",
        "--entity-id",
        "user_123",
        *WINDOW,
        "--include-duplicates",
        "--target",
        f"file://{out}",
    )
    assert (doc["status"], doc["matched"], doc["sent"]) == ("COMPLETED", 11, 11)
    assert doc["requester"] == "e2e-operator"
    messages = [json.loads(line) for line in out.read_text().splitlines()]
    assert [m["status"] for m in messages].count("DUPLICATE") == 1
    assert all(m["replay_id"] == doc["replay_id"] for m in messages)

    queued = pik_json(env, "replay", "--source", "demo", *WINDOW, "--limit", "3")
    assert (queued["sent"], queued["limit_reached"]) == (3, True)

    human = run_pik("replays", "list", env=env)  # piped: one tab-separated line per job
    assert human.returncode == 0, human.stderr
    ids = [line.split(b"\t")[0].decode() for line in human.stdout.splitlines()]
    assert ids[:2] == [queued["replay_id"], doc["replay_id"]]
    shown = pik_json(env, "replays", "show", str(doc["replay_id"]))
    assert shown["cursor"] and shown["finished_at"]

    refused = run_pik("replays", "cancel", str(doc["replay_id"]), env=env)
    assert refused.returncode == 1
    assert b"COMPLETED" in refused.stderr and len(refused.stderr.splitlines()) == 1


def test_bad_requests_exit_2_with_one_line(env: dict[str, str]) -> None:
    cases = [
        (["--entity-id", "x", "--start", "2025-12-29", "--end", "2025-12-28"], b"invalid_window"),
        ([*WINDOW, "--limit", "5"], b"no_selector"),
        (["--entity-id", "x", *WINDOW, "--target", "sqs://missing"], b"does not exist"),
    ]
    for args, reason in cases:
        done = run_pik("replay", *args, env=env)
        assert done.returncode == 2, (args, done.stderr)
        assert reason in done.stderr and len(done.stderr.strip().splitlines()) == 1
    missing = run_pik("replays", "show", "rp-nope", env=env)
    assert missing.returncode == 1 and b"no replay rp-nope" in missing.stderr


def test_malformed_replay_ids_exit_2_with_one_line_before_any_backend_call(
    env: dict[str, str],
) -> None:
    for command in ("show", "cancel", "resume"):
        for bad in ("", "has space", "x" * 200):
            done = run_pik("replays", command, bad, env=env)
            assert done.returncode == 2, (command, bad, done.stderr)
            assert b"invalid_replay_id" in done.stderr, (command, bad)
            assert b"ValidationException" not in done.stderr
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_sent_zero_is_a_signal_not_an_error(env: dict[str, str]) -> None:
    done = run_pik("replay", "--entity-id", "nobody", *WINDOW, env=env)
    assert done.returncode == 0, done.stderr
    assert b"sent = 0 (nothing_matched)" in done.stdout


def test_ctrl_c_stops_and_resume_finishes_without_repeats(
    env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "slow.ndjson"
    args = [
        "replay",
        "--entity-id",
        "user_123",
        *WINDOW,
        "--rate",
        "4",
        "--target",
        f"file://{out}",
    ]
    proc = subprocess.Popen(
        [PIK, *args, "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (out.exists() and out.read_text()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert b"pik replays resume" in stderr
    stopped = json.loads(stdout)
    assert stopped["status"] == "FAILED" and 0 < stopped["sent"] < 10

    # A dry run says what it would do and changes neither the job nor the target.
    before = (pik_json(env, "replays", "show", stopped["replay_id"]), out.read_text())
    dry = {**env, "DRY_RUN": "true"}
    would = pik_json(dry, "replays", "resume", stopped["replay_id"])
    assert would["dry_run"] is True
    assert (would["status"], would["matched"]) == ("FAILED", 10 - stopped["sent"])
    cancel = run_pik("replays", "cancel", stopped["replay_id"], env=dry)
    assert cancel.returncode == 0, cancel.stderr
    assert b"dry run: would cancel" in cancel.stdout
    assert (pik_json(env, "replays", "show", stopped["replay_id"]), out.read_text()) == before

    resumed = pik_json(env, "replays", "resume", stopped["replay_id"])
    assert (resumed["status"], resumed["sent"]) == ("COMPLETED", 10)
    ids = [json.loads(line)["event_id"] for line in out.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 10


def test_cancel_stops_a_running_replay_and_prints_what_it_really_sent(
    env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "cancelled.ndjson"
    args = [
        "replay",
        "--entity-id",
        "user_123",
        *WINDOW,
        "--rate",
        "1",
        "--target",
        f"file://{out}",
    ]
    proc = subprocess.Popen(
        [PIK, *args, "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (out.exists() and out.read_text()):
        time.sleep(0.05)
    replay_id = json.loads(out.read_text().splitlines()[0])["replay_id"]
    cancel = run_pik("replays", "cancel", replay_id, env=env)
    stdout, stderr = proc.communicate(timeout=10)
    assert cancel.returncode == 0, cancel.stderr
    delivered = len(out.read_text().splitlines())
    assert 0 < delivered < 10  # 1 message a second: stopped long before the end
    assert f"its runner stopped, sent {delivered}".encode() in cancel.stdout
    assert proc.returncode == 1, stderr
    final = json.loads(stdout)
    assert (final["status"], final["sent"]) == ("CANCELLED", delivered)
