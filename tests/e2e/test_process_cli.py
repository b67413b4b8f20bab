"""``pik process --visibility-timeout``: how long a received batch stays hidden (and how late a
killed processor's batch comes back). Checked where a user would notice it: the bounds on the
command line, and the ``VisibilityTimeout`` the command really asks SQS for.
(tests/reliability/test_crash.py kills ``pik process`` and waits for its batch to come back.)
Ctrl-C: a real ``pik process`` subprocess and SIGINT, busy and idle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import pik.kit
from consumers.ingest import Submission
from infra.aws import AwsClients, AwsConfig
from infra.resources import REPLAY_VISIBILITY_TIMEOUT_S
from pik.kit import Kit
from pik.settings import Settings
from schemas.codec import Provenance
from schemas.envelope import parse_body
from tests.e2e.conftest import PIK, base_env, run_pik

RESOURCE_ENV = ("bucket", "events_table", "aggregates_table", "replay_queue", "replay_dlq")


@pytest.mark.parametrize("seconds", ["0", "-5", "43201", "two"])
def test_a_visibility_timeout_outside_sqs_bounds_is_refused(seconds: str) -> None:
    done = run_pik(
        "process", "--once", "--visibility-timeout", seconds, env=base_env(COLUMNS="200")
    )
    assert done.returncode == 2
    assert b"Invalid value for '--visibility-timeout'" in done.stderr, done.stderr


def test_the_help_names_the_option() -> None:
    done = run_pik("process", "--help", env=base_env())
    assert done.returncode == 0
    assert b"--visibility-timeout" in done.stdout


def receives_asked(
    kit: Kit, settings: Settings, monkeypatch: pytest.MonkeyPatch, *args: str
) -> list[int]:
    """Run ``pik process --once`` in-process; the VisibilityTimeout of each ReceiveMessage."""
    asked: list[int] = []

    def watch(service: str, client: Any) -> None:
        if service == "sqs":
            client.meta.events.register(
                "provide-client-params.sqs.ReceiveMessage",
                lambda params, **_: asked.append(int(params["VisibilityTimeout"])),
            )

    def clients(config: AwsConfig) -> AwsClients:
        return AwsClients(config, on_client=watch, environ={})

    monkeypatch.setattr(pik.kit, "AwsClients", clients)
    monkeypatch.setattr("pik.cli.common.configure_logging", lambda *_: None)
    monkeypatch.setattr(signal, "signal", lambda *_: None)  # the command's Ctrl-C handler
    for key in [k for k in os.environ if k.startswith(("AWS_", "PIK_", "DRY_RUN"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", settings.endpoint_url or "")
    for name in RESOURCE_ENV:
        monkeypatch.setenv(f"PIK_{name.upper()}", str(getattr(settings, name)))
    from pik.cli import app

    done = CliRunner().invoke(app, ["process", "--once", "--wait", "1", "--json", *args])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["messages"] == 0
    return asked


def test_the_visibility_timeout_reaches_sqs(
    kit: Kit, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = receives_asked(kit, settings, monkeypatch, "--visibility-timeout", "7")
    assert asked and set(asked) == {7}


def test_without_the_option_the_default_applies(
    kit: Kit, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = receives_asked(kit, settings, monkeypatch)
    assert asked and set(asked) == {REPLAY_VISIBILITY_TIMEOUT_S}


def _queue_counts(kit: Kit, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of the queue."""
    attributes = kit.clients.sqs().get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def _interrupt(proc: subprocess.Popen[bytes]) -> float:
    """SIGINT, then the seconds until the process has exited."""
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    return time.monotonic() - sent


def test_ctrl_c_stops_within_two_seconds_busy_or_idle_and_loses_no_message(
    kit: Kit, settings: Settings, tmp_path: Path
) -> None:
    events = 400
    bodies = [
        json.dumps(
            {
                "source": "demo",
                "event_type": "heartbeat",
                "entity_id": f"user_{n % 4}",
                "event_time": f"2025-12-28T{n % 24:02d}:{n % 60:02d}:00Z",
                "payload": {"n": n},
            }
        ).encode()
        for n in range(events)
    ]
    subs = [
        Submission(b, Provenance(f"sigint:{i}", "http"), parse_body(b), str(i))
        for i, b in enumerate(bodies)
    ]
    results = kit.sink.ingest(subs, label="sigint")
    url = kit.clients.sqs().get_queue_url(QueueName=settings.replay_queue)["QueueUrl"]
    for start in range(0, events, 10):
        entries = [
            {
                "Id": str(i),
                "MessageBody": json.dumps(
                    {
                        "replay_id": "rp-sigint",
                        "event_id": r.event_id,
                        "entity_id": json.loads(b)["entity_id"],
                        "event_time": json.loads(b)["event_time"],
                        "archive": r.archive.to_json() if r.archive else None,
                    }
                ),
            }
            for i, (r, b) in enumerate(
                zip(results[start : start + 10], bodies[start : start + 10], strict=True)
            )
        ]
        kit.clients.sqs().send_message_batch(QueueUrl=url, Entries=entries)
    env = base_env(
        AWS_ENDPOINT_URL=settings.endpoint_url or "",
        AWS_REGION=settings.region,
        **{f"PIK_{name.upper()}": str(getattr(settings, name)) for name in RESOURCE_ENV},
    )
    # Busy: interrupted mid-drain.
    out = tmp_path / "busy.json"
    with out.open("wb") as sink:
        busy = subprocess.Popen(
            [PIK, "process", "--json"], env=env, stdout=sink, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while _queue_counts(kit, url)[0] > events - 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        busy_s = _interrupt(busy)
    handled = json.loads(out.read_text())["messages"]
    visible, in_flight = _queue_counts(kit, url)
    assert busy.returncode == 0
    assert busy_s < 2.0, f"busy: stopped {busy_s:.1f} s after Ctrl-C"
    assert in_flight == 0  # nothing held back for the visibility timeout
    assert 0 < handled < events and visible == events - handled  # none lost, none twice
    # Idle: the queue drained, the processor waiting on an empty queue.
    idle = subprocess.Popen(
        [PIK, "process"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while sum(_queue_counts(kit, url)) > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # a receive or two on the empty queue
    idle_s = _interrupt(idle)
    assert idle.stdout is not None
    lines = idle.stdout.read().decode().splitlines()
    assert idle.returncode == 0
    assert idle_s < 2.0, f"idle: stopped {idle_s:.1f} s after Ctrl-C"
    assert len(lines) == 1 and lines[0].startswith(f"{visible} messages in "), lines  # piped
    [count] = [v for v in kit.aggregates().versions("user_0") if v.metric == "daily_event_count"][
        -1:
    ]
    assert count.value == events // 4
