"""The ``pik`` command line: the operator's front door.

Every command has ``--help``; failures print one line on stderr and exit non-zero (1: the kit or
the backend failed, 2: bad usage or configuration, or a port already in use); ``--json`` prints
one JSON document.

Each command group is a module of this package (``service``: local, bootstrap, serve, up;
``events``: ingest, explain; ``tap``; ``replay``; ``audit``; ``process``; ``schemas``;
``deploy``; ``demo``), sharing ``common``; only this module assembles them into the app.
"""

from __future__ import annotations

import typer

from infra.errors import ConfigError
from pik.cli import audit, demo, deploy, events, process, reindex, replay, schemas, service, tap
from pik.cli.common import print_error
from pik.runtime import tune_collector

__all__ = ["app", "main"]

app = typer.Typer(
    name="pik",
    help="Pipeline Investigation Kit: keep the truth about every event, replay it, explain it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts quote TOML tables ([[tap]], [schemas]): plain text, never rich markup.
    rich_markup_mode=None,
)
for group in (service, events, demo, replay, tap, audit, deploy, process, reindex):
    app.add_typer(group.app)
app.add_typer(replay.replays, name="replays")
app.add_typer(process.aggregates_app, name="aggregates")
app.add_typer(schemas.app, name="schemas")


def main() -> None:
    tune_collector()  # every command is long-running work over many records, or quick
    try:
        app()
    except ConfigError as exc:
        print_error(str(exc))
        raise SystemExit(2) from exc
