"""``pik reindex``: rebuild the index (identity, occurrence and catalog items) from the archive.

The migration path from an older table layout (point ``PIK_EVENTS_TABLE`` at a new table, run
``pik bootstrap`` and ``pik reindex``) and the recovery path when the table is lost. It reads
the archive files alone and is idempotent: run it again, or over a live index, and nothing
changes. On a terminal it shows a progress bar over the archive files.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from consumers.reindex import Reindexer
from pik.cli.common import commands, err, fail, kit_errors, open_kit, out, print_json
from pik.investigate.window import WindowError, parse_when

app = commands()

WhenOpt = Annotated[
    str | None,
    typer.Option(metavar="WHEN", help="2025-12-28T05:00:00Z, 2025-12-28, or 36h / 7d ago."),
]


@app.command()
@kit_errors
def reindex(
    since: WhenOpt = None,
    until: WhenOpt = None,
    source: Annotated[
        str | None, typer.Option(metavar="SOURCE", help="Only this source's files.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (for scripts).")
    ] = False,
) -> None:
    """Rebuild the index from the archive files of [--since, --until) (by ingest hour;
    default: the whole archive). Idempotent. DRY_RUN=true counts the files and writes
    nothing."""
    kit = open_kit()
    now = kit.clock.now()
    try:
        start = parse_when(since, now) if since else None
        end = parse_when(until, now) if until else None
    except WindowError as exc:
        fail(str(exc), 2)
    if start is not None and end is not None and end <= start:
        fail("--until must be after --since", 2)
    reindexer = Reindexer(kit.archive, kit.index)
    if kit.settings.dry_run:
        plan = reindexer.plan(since=start, until=end, source=source)
        doc = {"dry_run": True, "hours": len(plan), "files": sum(len(k) for _, k in plan)}
        if as_json:
            print_json(doc)
        else:
            out.print(f"DRY_RUN: would reindex {doc['files']} files over {doc['hours']} hours")
        return
    bar = None if as_json or not err.is_terminal else Progress(
        TextColumn("reindex"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=True,
    )  # fmt: skip
    task = bar.add_task("files", total=None) if bar else None

    def progress(done: int, total: int) -> None:
        if bar is not None and task is not None:
            bar.update(task, completed=done, total=total)

    if bar is not None:
        bar.start()
    try:
        report = reindexer.run(since=start, until=end, source=source, progress=progress)
    finally:
        if bar is not None:
            bar.stop()
    if as_json:
        print_json(report.to_json())
        return
    out.print(", ".join(f"{k} {v}" for k, v in report.to_json().items()), highlight=False)
