"""What every command shares: the consoles, errors and exit codes, settings, JSON output.

Imports no command. Exit codes: 0 done, 1 the kit or its backend failed (``KitError``),
2 the caller's input or configuration is wrong (``ConfigError``, bad options), 3 refused on
purpose (e.g. a dry run that would have to consume).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from infra.errors import ConfigError, KitError
from pik.kit import Kit, build_kit
from pik.logs import configure_logging
from pik.settings import Settings, describe_errors

P = ParamSpec("P")
R = TypeVar("R")

out = Console(soft_wrap=True)  # lines are never broken: ids and keys stay copyable
err = Console(stderr=True, soft_wrap=True)

DEFAULT_AWS_PORT = 4566
DEFAULT_API_PORT = 8080

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts).")]
DataDir = Annotated[
    Path | None,
    typer.Option(help="Keep the embedded backend's state here across restarts."),
]
PORT_RANGE: dict[str, Any] = {"min": 0, "max": 65535}


def commands(**options: Any) -> typer.Typer:
    """A group of commands, as every module of the CLI defines one (the package's ``__init__``
    adds them to the app, with a name for a sub-command group, without one for top-level
    commands)."""
    # Help texts quote TOML tables ([[tap]], [schemas]): plain text, never rich markup.
    return typer.Typer(rich_markup_mode=None, **options)


def print_error(message: str) -> None:
    """``error: <message>`` on stderr, the message as it is (``[[tap]]`` is not markup)."""
    err.print(Text.assemble(("error:", "red"), " ", message), highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    print_error(message)
    raise typer.Exit(code)


def print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def kit_errors(command: Callable[P, R]) -> Callable[P, R]:
    """The one mapping of the kit's errors to exit codes: ``ConfigError`` → 2 (the caller's
    configuration or input), any other ``KitError`` → 1, each as one ``error:`` line."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ConfigError as exc:
            fail(str(exc), 2)
        except KitError as exc:
            fail(str(exc), 1)

    return run


def load_settings(**overrides: Any) -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        fail(describe_errors(exc, os.environ), 2)
    configure_logging(settings.log_level)
    return settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def open_kit(settings: Settings | None = None) -> Kit:
    """The kit of these settings (default: the environment's). The config file is read here,
    once, so every command refuses a bad one the same way: exit 2 naming the key."""
    try:
        return build_kit(settings or load_settings())
    except ConfigError as exc:
        fail(str(exc), 2)
    except KitError as exc:
        fail(str(exc), 1)
