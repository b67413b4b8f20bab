"""``pik process --visibility-timeout``: how long a received batch stays hidden (and how late a
killed processor's batch comes back). Checked where a user would notice it: the bounds on the
command line, and the ``VisibilityTimeout`` the command really asks SQS for.
(tests/reliability/test_crash.py kills ``pik process`` and waits for its batch to come back.)"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest
from typer.testing import CliRunner

import pik.kit
from infra.aws import AwsClients, AwsConfig
from infra.resources import REPLAY_VISIBILITY_TIMEOUT_S
from pik.kit import Kit
from pik.settings import Settings
from tests.e2e.conftest import base_env, run_pik

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
