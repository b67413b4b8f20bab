"""What `pik` says when it cannot do what was asked: one line, `error: ...`, the right exit code,
and the words the user needs (a TOML table's name, the variable to fix, the flag to use).

Run in process with typer's CliRunner: no command here gets as far as serving anything. Busy
ports are real sockets; the replay case uses the session's embedded AWS, never bootstrapped for
the names it uses.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from infra.errors import ConfigError
from infra.local import EmbeddedAws
from pik import cli
from pik.investigate.service import MAX_CATALOG_SOURCES
from tests.conftest import fresh_settings
from tests.e2e.conftest import free_port

# What rich markup would have eaten: a bracketed word starting with a letter.
BRACKETED = re.compile(r"\[+[A-Za-z][^\[\]\n]*\]+")
BAD_TAP_KEY = '[[tap]]\nstream = "orders"\nentity = "$.customer"\n'


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AWS_*, PIK_* or DRY_RUN from the developer's shell."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "PIK_")) or name == "DRY_RUN":
            monkeypatch.delenv(name)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.create_server(("127.0.0.1", 0)) as holder:
        yield holder.getsockname()[1]


def pik(*args: str) -> Result:
    return CliRunner().invoke(cli.app, list(args))


def one_error_line(done: Result) -> str:
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def flat(text: str) -> str:
    """Help text as one line: wrapping (and a rich panel's borders) taken out."""
    return " ".join(text.replace("│", " ").split())


def commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from commands(sub, (*path, name))


# -- 1. brackets in help and error text ------------------------------------------------------
def test_every_help_text_keeps_its_bracketed_words() -> None:
    checked = 0
    for path, command in commands(typer.main.get_command(cli.app)):
        written = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        words = {w for text in written for w in BRACKETED.findall(text)}
        if not words:
            continue
        shown = flat(pik(*path, "--help").stdout)
        for word in words:
            assert word in shown, (path, word)
            checked += 1
    assert checked >= 2  # `up` quotes [[tap]], `schemas` its [schemas] table


def test_up_help_names_the_tap_table() -> None:
    assert "every [[tap]] binding of the config file" in flat(pik("up", "--help").stdout)


@pytest.mark.parametrize("command", [["up"], ["tap", "--stream", "orders", "--once"]])
def test_a_config_error_shows_the_table_it_is_about(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(BAD_TAP_KEY)
    monkeypatch.setenv("PIK_CONFIG", str(config))
    done = pik(*command)
    assert done.exit_code == 2
    assert one_error_line(done).startswith(f"error: {config}: [[tap]] #1: unknown key(s) entity;")


EVERY_KIT_COMMAND = [
    ["bootstrap"],
    ["serve", "--port", "0"],
    ["ingest", "-"],
    ["explain", "a" * 64],
    ["audit"],
    ["gaps"],
    ["lag"],
    ["report", "--out", "/dev/null"],
    ["replay", "--entity-id", "u", "--start", "2025-12-28", "--end", "2025-12-29", "--dry-run"],
    ["replays", "list"],
    ["replays", "show", "r-1"],
    ["process", "--once"],
    ["aggregates", "show", "user_123"],
    ["schemas", "list"],
    ["produce", "--stream", "orders", "--count", "1"],
]


@pytest.mark.parametrize("command", EVERY_KIT_COMMAND, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize(
    ("toml", "words"),
    [
        (BAD_TAP_KEY, "[[tap]] #1: unknown key(s) entity;"),
        ("[colour]\nred = 1\n", "unknown top-level key(s) colour;"),
        ('[[aggregate]]\nname = "x"\nkind = "sum"\nfeild = "a"\n', "unknown keys feild"),
    ],
    ids=["tap key", "top-level key", "aggregate key"],
)
def test_every_command_refuses_an_unknown_config_key_with_exit_2(
    command: list[str], toml: str, words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config file is read once, by the kit, so no command accepts what another refuses
    (``audit``, ``explain``, ``ingest`` and ``replays list`` used to ignore it; ``process``
    exited 1)."""
    config = tmp_path / "pik.toml"
    config.write_text(toml)
    monkeypatch.setenv("PIK_CONFIG", str(config))
    done = pik(*command)
    assert done.exit_code == 2, done.output
    line = one_error_line(done)
    assert line.startswith(f"error: {config}: ") and words in line, line


def test_main_prints_an_escaping_config_error_as_it_is(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = typer.Typer()

    @broken.command()
    def go() -> None:
        raise ConfigError("pik.toml: [sources.orders]: unknown key(s) polcy")

    monkeypatch.setattr(cli, "app", broken)
    monkeypatch.setattr("sys.argv", ["pik"])
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == 2
    assert capsys.readouterr().err == "error: pik.toml: [sources.orders]: unknown key(s) polcy\n"


# -- 2. busy ports ---------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["serve", "up"])
def test_a_busy_http_port_is_one_line_and_exit_2(command: str, busy_port: int) -> None:
    done = pik(command, "--port", str(busy_port))
    assert done.exit_code == 2
    assert one_error_line(done) == (
        f"error: port {busy_port} on 127.0.0.1 is in use: the HTTP API cannot listen there "
        f"(stop what holds it, or use --port {busy_port + 1})"
    )


@pytest.mark.parametrize(
    ("command", "flag"), [(["local"], "--port"), (["up", "--port", "0"], "--aws-port")]
)
def test_a_busy_embedded_aws_port_is_one_line_and_exit_2(
    command: list[str], flag: str, busy_port: int
) -> None:
    done = pik(*command, flag, str(busy_port))
    assert done.exit_code == 2
    assert one_error_line(done) == (
        f"error: port {busy_port} on 127.0.0.1 is in use: the embedded AWS cannot listen there "
        f"(stop what holds it, or use {flag} {busy_port + 1})"
    )


def test_up_lets_go_of_its_http_port_when_the_embedded_aws_cannot_start(busy_port: int) -> None:
    api = free_port()
    assert pik("up", "--port", str(api), "--aws-port", str(busy_port)).exit_code == 2
    with socket.create_server(("127.0.0.1", api)):
        pass


# -- 3. bad PIK_* values ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "PIK_MAX_EVENT_BYTES",
            "abc",
            "Input should be a valid integer, unable to parse string as an integer",
        ),
        ("PIK_MAX_BODY_BYTES", "0", "Input should be greater than 0"),
        ("DRY_RUN", "maybe", "Input should be a valid boolean, unable to interpret input"),
        ("PIK_DRY_RUN", "maybe", "Input should be a valid boolean, unable to interpret input"),
    ],
)
def test_a_bad_variable_is_named_as_it_is_set(
    variable: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    done = pik("bootstrap")
    assert done.exit_code == 2
    assert one_error_line(done) == f"error: {variable}: {message}"


def test_every_bad_variable_is_named_on_the_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIK_MAX_EVENT_BYTES", "-1")
    monkeypatch.setenv("PIK_MAX_BODY_BYTES", "lots")
    line = one_error_line(pik("bootstrap"))
    assert "PIK_MAX_EVENT_BYTES: " in line and "; PIK_MAX_BODY_BYTES: " in line


# -- 4. replay before bootstrap ----------------------------------------------------------------
def test_replay_before_bootstrap_says_to_run_it(
    aws_server: EmbeddedAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fresh_settings(aws_server.endpoint_url)  # names nothing has created
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_server.endpoint_url)
    monkeypatch.setenv("PIK_REPLAY_QUEUE", settings.replay_queue)
    monkeypatch.setenv("PIK_REPLAY_JOBS_TABLE", settings.replay_jobs_table)
    monkeypatch.setenv("PIK_EVENTS_TABLE", settings.events_table)
    window = ["--start", "2025-12-28T00:00:00Z", "--end", "2025-12-29T00:00:00Z"]
    done = pik("replay", "--entity-id", "user_123", *window)
    assert done.exit_code == 2
    assert one_error_line(done) == (
        f"error: queue {settings.replay_queue} does not exist (run `pik bootstrap`)"
    )
    named = pik("replay", "--entity-id", "user_123", *window, "--target", "sqs://elsewhere")
    assert one_error_line(named) == "error: queue elsewhere does not exist"  # not ours to make


# -- 5. report --help ---------------------------------------------------------------------------
def test_report_help_says_what_happens_without_a_source() -> None:
    shown = flat(pik("report", "--help").stdout)
    assert "Required until" not in shown
    assert (
        "Default: every source the index's catalog saw in the window "
        f"(with more than {MAX_CATALOG_SOURCES}, name them)" in shown
    )
