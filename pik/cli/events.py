"""``pik ingest`` (NDJSON through the ingest path) and ``pik explain`` (everything known about
one event)."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Annotated

import typer

from consumers.ingest import IngestResult
from infra.errors import KitError, NotFound
from pik.cli.common import JsonFlag, commands, err, fail, open_kit, out, print_json
from pik.explain import explain as explain_event
from pik.ingest_file import ingest_lines
from pik.render import render_explain

app = commands()


@app.command()
def ingest(
    file: Annotated[str, typer.Argument(help="NDJSON file of events, or - for stdin.")],
    batch_size: Annotated[int, typer.Option(min=1, max=5000, help="Events per batch.")] = 500,
    results: Annotated[
        bool, typer.Option("--results", help="Print one JSON line per input line: its outcome.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Send NDJSON events through the ingest path (validate, identify, archive, index).

    With DRY_RUN=true nothing is written: use `--results` to learn event ids and statuses.
    """
    kit = open_kit()
    try:
        stream = sys.stdin.buffer if file == "-" else Path(file).open("rb")  # noqa: SIM115
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}", 2)
    show_progress = not as_json and not results and out.is_terminal

    def print_result(number: int, result: IngestResult) -> None:
        doc = {"line": number, **result.to_json()}
        sys.stdout.write(json.dumps(doc) + "\n")

    try:
        with stream:
            summary = ingest_lines(
                kit,
                stream,
                label=f"file-{uuid.uuid4().hex[:12]}",
                batch_size=batch_size,
                progress=show_progress,
                on_result=print_result if results else None,
            )
    except KitError as exc:
        fail(str(exc))
    if as_json:
        print_json(summary)
        return
    if results:
        err.print(f"{summary['lines']} lines, dry run: {summary['dry_run']}", highlight=False)
        return
    verb = "would ingest" if summary["dry_run"] else "ingested"
    out.print(
        f"{verb} {summary['lines']} lines: {summary['accepted']} accepted, "
        f"{summary['duplicate']} duplicate, {summary['rejected']} rejected"
    )
    for reason, count in summary["reasons"].items():
        out.print(f"  rejected {reason}: {count}")


@app.command()
def explain(
    event_id: Annotated[str, typer.Argument(help="The event id (64 hex digits).")],
    as_json: JsonFlag = False,
) -> None:
    """Everything known about one event: every delivery (arrival, provenance, status and reason,
    lag, archive location, schema), the replays that re-emitted it and the aggregate versions
    that included it."""
    kit = open_kit()
    try:
        doc = explain_event(event_id, kit.index, kit.reader, kit.lineage())
    except NotFound as exc:
        fail(str(exc), 1)
    except KitError as exc:
        fail(str(exc))
    if as_json:
        print_json(doc)
    else:
        render_explain(out, doc)
