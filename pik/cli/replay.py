"""``pik replay`` and ``pik replays list / show / resume / cancel`` .

On a terminal a replay shows a spinner while it plans and a progress bar (rate, ETA) while it
sends; ``--json`` prints the final job as one JSON document instead. Ctrl-C stops a replay at
the next batch and records it as FAILED ("interrupted"), resumable with
``pik replays resume ID``. Exit codes: 0 done (``sent = 0`` included: it is a signal, not an
error), 1 the replay failed or was cancelled or the backend failed, 2 a bad request, 130 Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from infra.errors import KitError
from infra.replay_jobs import JobStatus, ReplayJob
from infra.targets import InvalidTarget, ReplayTarget
from pik.cli.common import commands, err, fail, open_kit, out, print_json
from pik.render import print_table
from producers.replay import InvalidReplayRequest, job_json, parse_request

if TYPE_CHECKING:
    from producers.replay import ReplayService

__all__ = ["app", "parse_duration_ms", "replays"]

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts).")]
ReplayId = Annotated[str, typer.Argument(help="The replay id (from `pik replays list`).")]
EXIT_INTERRUPTED = 130
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str) -> int:
    """``"1h"``, ``"15m"``, ``"90s"``, ``"500ms"``, ``"2d"`` (a bare number is milliseconds)."""
    match = _DURATION.match(text)
    if not match:
        raise typer.BadParameter(f"{text!r} is not a duration like 1h, 15m, 90s or 500ms")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2) or "ms"])


def _service() -> ReplayService:
    kit = open_kit()
    open_target = kit.replay_targets(allow_files=True)

    def targets(spec: str | None) -> ReplayTarget:
        try:
            return open_target(spec)
        except InvalidTarget as exc:
            if spec in (None, "", "default"):  # the kit's own replay queue: bootstrap makes it
                raise InvalidTarget(f"{exc} (run `pik bootstrap`)") from exc
            raise

    return kit.replay_service(allow_files=True, targets=targets)


@contextlib.contextmanager
def _interruptible() -> Iterator[threading.Event]:
    """Ctrl-C sets the event (the replay stops at its next batch) instead of killing us."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


class _Bar:
    """A rich progress bar (sent / matched, rate, ETA), only on a terminal."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if enabled:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} msg/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )

    def __enter__(self) -> _Bar:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task("planning", total=None, rate="-")
        return self

    def __exit__(self, *_: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def planned(self, job: ReplayJob) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task, description=f"replaying {job.replay_id}", total=job.matched
            )

    def update(self, sent: int, matched: int) -> None:
        if self._progress is None or self._task is None:
            return
        self._progress.update(self._task, completed=sent, total=matched)
        speed = self._progress.tasks[0].speed
        self._progress.update(self._task, rate=f"{speed:,.0f}" if speed else "-")


def _summary(console: Console, doc: dict[str, Any]) -> None:
    """A few lines a person reads after a replay (the JSON has everything)."""
    covered = doc.get("covered") or {}
    span = ""
    if covered.get("first_event_time"):
        span = f" covering {covered['first_event_time']} .. {covered['last_event_time']}"
    if doc["dry_run"]:
        console.print(
            f"dry run: would send {doc['matched']} messages (~{doc['estimated_bytes']:,} payload "
            f"bytes){span} to {doc['target']}; scanned {doc['scanned']}",
            highlight=False,
            markup=False,
        )
    else:
        console.print(
            f"replay {doc['replay_id']} {doc['status']}: sent {doc['sent']} of "
            f"{doc['matched']} matched (scanned {doc['scanned']}){span} to {doc['target']}",
            highlight=False,
            markup=False,
        )
    statuses = ", ".join(f"{k.lower()} {v}" for k, v in (doc.get("by_status") or {}).items() if v)
    if statuses:
        console.print(f"  by status: {statuses}", highlight=False, markup=False)
    if doc.get("first_event_ids"):
        console.print(
            f"  first events: {', '.join(doc['first_event_ids'][:5])}",
            highlight=False,
            markup=False,
        )
    if doc.get("limit_reached"):
        console.print(
            f"  limit of {doc['limit']} reached: more events may match",
            highlight=False,
            markup=False,
        )
    if doc.get("payload_omitted"):
        console.print(
            f"  payload omitted (too large for the target, pointer only): {doc['payload_omitted']}",
            highlight=False,
            markup=False,
        )
    if doc.get("signal"):
        sig = doc["signal"]
        console.print(
            f"  sent = 0 ({sig['reason']}): {sig['detail']}", highlight=False, markup=False
        )
    if doc.get("reason") and doc["status"] != JobStatus.COMPLETED.value:
        console.print(f"  reason: {doc['reason']}", highlight=False, markup=False)


def _outcome(doc: dict[str, Any], as_json: bool, stopped: bool) -> None:
    """Print the job and exit with the code its status calls for."""

    if as_json:
        print_json(doc)
    else:
        _summary(out, doc)
    if doc["dry_run"]:  # the job's status is as it was: nothing ran
        return
    if stopped and doc["status"] == JobStatus.FAILED.value:
        fail(f"interrupted: resume with `pik replays resume {doc['replay_id']}`", EXIT_INTERRUPTED)
    if doc["status"] == JobStatus.FAILED.value:
        fail(f"replay {doc['replay_id']} failed: {doc['reason']}")
    if doc["status"] == JobStatus.CANCELLED.value:
        fail(f"replay {doc['replay_id']} was cancelled")


def _run_with_bar(
    as_json: bool, work: Callable[[_Bar, Callable[[], bool]], tuple[ReplayJob, bool]]
) -> None:

    try:
        with _interruptible() as stop, _Bar(err, enabled=not as_json and err.is_terminal) as bar:
            job, dry_run = work(bar, stop.is_set)
    except InvalidReplayRequest as exc:
        fail(f"{exc.reason}: {exc.detail}", 2)
    except InvalidTarget as exc:
        fail(str(exc), 2)
    except KitError as exc:
        fail(str(exc))
    _outcome(job_json(job, dry_run=dry_run), as_json, stop.is_set())


app = commands()


@app.command()
def replay(
    start: Annotated[
        str, typer.Option("--start", help="Window start, included (2025-12-28T00:00:00Z).")
    ],
    end: Annotated[str, typer.Option("--end", help="Window end, excluded (half-open).")],
    entity_id: Annotated[str | None, typer.Option(help="Events of this entity.")] = None,
    source: Annotated[str | None, typer.Option(help="Events of this source.")] = None,
    event_type: Annotated[str | None, typer.Option(help="Events of this type.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many messages.")] = None,
    include_duplicates: Annotated[
        bool,
        typer.Option(
            "--include-duplicates",
            help="One message per recorded delivery, duplicates included.",
        ),
    ] = False,
    include_rejected: Annotated[
        bool,
        typer.Option(
            "--include-rejected", help="Also rejected deliveries (windowed by ingest time)."
        ),
    ] = False,
    target: Annotated[
        str | None,
        typer.Option(
            help="SQS queue URL, sqs://NAME, kinesis://STREAM, a stream ARN or "
            "file:///path.ndjson (default: the replay queue)."
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Plan only: what would be sent (also DRY_RUN=true)."),
    ] = False,
    rate: Annotated[float | None, typer.Option(help="At most N messages per second.")] = None,
    min_lag: Annotated[
        str | None, typer.Option(help="Only events that arrived this late (1h, 15m, 500ms).")
    ] = None,
    with_payload: Annotated[
        bool,
        typer.Option("--with-payload", help="Put the archived envelope in every message."),
    ] = False,
    requester: Annotated[
        str | None, typer.Option(help="Who asks, for the job record (default: $USER).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Re-send chosen events from the index to a queue, stream or file, as a resumable job.

    The window is half-open on event time: [--start, --end). Give --entity-id and/or
    --source/--event-type. Try --dry-run first: it says how much would be sent.
    """
    try:
        request = parse_request(
            {},
            entity_id=entity_id,
            source=source,
            event_type=event_type,
            start_time=start,
            end_time=end,
            limit=limit,
            include_duplicates=include_duplicates,
            include_rejected=include_rejected,
            target=target,
            dry_run=dry_run,
            rate_limit=rate,
            min_lag_ms=parse_duration_ms(min_lag) if min_lag is not None else None,
            with_payload=with_payload,
        )
    except InvalidReplayRequest as exc:
        fail(f"{exc.reason}: {exc.detail}", 2)
    who = requester or os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"
    service = _service()

    def work(bar: _Bar, should_stop: Callable[[], bool]) -> tuple[ReplayJob, bool]:
        started = service.replay(
            request,
            requester=who,
            progress=bar.update,
            should_stop=should_stop,
            on_planned=bar.planned,
        )
        return started.job, started.dry_run

    _run_with_bar(as_json, work)


replays = commands(help="Replay jobs: list, show, resume, cancel.", no_args_is_help=True)


@replays.command("list")
def list_(
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many, newest first.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Recent replay jobs, newest first."""

    try:
        jobs = _service().recent(limit)
    except KitError as exc:
        fail(str(exc))
    docs = [job_json(j) for j in jobs]
    if as_json:
        print_json({"replays": docs})
        return
    if not docs:
        out.print("no replays yet")
        return
    rows = []
    for doc in docs:
        selection = " ".join(
            f"{k}={doc[k]}" for k in ("entity_id", "source", "event_type") if doc[k]
        )
        rows.append(
            (
                doc["replay_id"],
                doc["status"],
                f"{doc['sent']}/{doc['matched']}",
                doc["requester"],
                doc["created_at"][:19],
                f"{selection} [{doc['start_time']}, {doc['end_time']})",
            )
        )
    if not out.is_terminal:  # piped: one tab-separated line per job, nothing cut
        sys.stdout.write("".join("\t".join(row) + "\n" for row in rows))
        return
    table = Table()
    for name in ("replay", "status", "sent/matched", "requester", "created"):
        table.add_column(name, no_wrap=True)  # ids are copied into other commands: never cut
    table.add_column("selection", overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    print_table(out, table)


@replays.command()
def show(replay_id: ReplayId, as_json: JsonFlag = False) -> None:
    """One replay job: request, requester, times, status, counts, cursor."""

    try:
        doc = job_json(_service().get(replay_id))
    except InvalidReplayRequest as exc:
        fail(f"{exc.reason}: {exc.detail}", 2)
    except KitError as exc:
        fail(str(exc))
    if as_json:
        print_json(doc)
        return
    _summary(out, doc)
    for key in ("requester", "created_at", "started_at", "finished_at", "cursor"):
        out.print(f"  {key}: {doc[key]}", highlight=False, markup=False)


@replays.command()
def resume(
    replay_id: ReplayId,
    force: Annotated[
        bool,
        typer.Option("--force", help="Take over a RUNNING job whose runner you know is gone."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Continue an interrupted or failed replay from its cursor; nothing is sent twice."""
    service = _service()

    def work(bar: _Bar, should_stop: Callable[[], bool]) -> tuple[ReplayJob, bool]:
        job = service.resume(
            replay_id,
            force=force,
            progress=bar.update,
            should_stop=should_stop,
            on_planned=bar.planned,
        )
        return job, service.dry_run

    _run_with_bar(as_json, work)


@replays.command()
def cancel(replay_id: ReplayId, as_json: JsonFlag = False) -> None:
    """Stop a replay for good; waits up to 5 s for a running one's runner to stop."""

    service = _service()
    acknowledged = False
    try:
        job = service.cancel(replay_id)
        if not service.dry_run and job.runner is not None:
            stopped = service.wait_stopped(job)
            acknowledged = stopped is not None
            job = stopped or service.get(replay_id)
        doc = job_json(job, dry_run=service.dry_run)
    except InvalidReplayRequest as exc:
        fail(f"{exc.reason}: {exc.detail}", 2)
    except KitError as exc:
        fail(str(exc))
    if as_json:
        print_json(doc)
    elif service.dry_run:
        out.print(
            f"dry run: would cancel replay {replay_id} ({doc['status']}, "
            f"sent {doc['sent']} so far); nothing changed",
            markup=False,
        )
    else:
        out.print(
            f"replay {replay_id} cancelled: its runner stopped, sent {doc['sent']}"
            if acknowledged
            else f"replay {replay_id} cancelled; no runner acknowledged, "
            f"sent {doc['sent']} at its last checkpoint",
            markup=False,
        )
