"""``pik process`` (the opt-in processor) and ``pik aggregates show / diff``."""

from __future__ import annotations

import signal
import threading
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from consumers.processor import diff_versions
from consumers.processor_loop import DEFAULT_WAIT_S, DryRunRefused, LoopSummary, run_queue
from infra.aggregates import AggregateVersion
from infra.errors import KitError
from infra.queue import SQS_MAX_VISIBILITY_S
from infra.resources import REPLAY_VISIBILITY_TIMEOUT_S
from pik.cli.common import commands, err, fail, open_kit, out, print_json
from pik.render import print_table

aggregates_app = commands(
    help="Versions of aggregates, and what changed between two of them.", no_args_is_help=True
)


def process(
    once: Annotated[bool, typer.Option("--once", help="Drain the queue, then exit.")] = False,
    queue_url: Annotated[
        str | None, typer.Option("--queue-url", help="Another queue than the replay queue.")
    ] = None,
    wait: Annotated[
        int,
        typer.Option(
            min=1,
            max=20,
            help="Long-poll seconds per receive. Ctrl-C is honoured between receives, so it "
            "stops within this long (plus a second); longer polls make fewer idle requests.",
        ),
    ] = DEFAULT_WAIT_S,
    visibility_timeout: Annotated[
        int,
        typer.Option(
            "--visibility-timeout",
            min=1,
            max=SQS_MAX_VISIBILITY_S,
            metavar="SECONDS",
            help="How long a received batch stays hidden from other processors; if this one "
            "dies, its batch comes back after that long. Longer than a batch takes.",
        ),
    ] = REPLAY_VISIBILITY_TIMEOUT_S,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Consume replay messages and write versioned aggregates (off unless you run it).

    For each (entity, day) the messages touch, the aggregate is recomputed from all of that
    day's accepted events, once per replay; a version is written only when its inputs changed.
    Progress shows on a terminal; a summary line at the end. Ctrl-C stops within about a
    second, handing unhandled messages back to the queue. DRY_RUN=true refuses (exit 3) without
    receiving anything: a receive counts toward the queue's maxReceiveCount.
    """
    kit = open_kit()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started = time.monotonic()
    try:
        processor = kit.processor()
        queue = kit.replay_queue(queue_url, visibility_timeout_s=visibility_timeout)
        if not once:
            err.print(f"processing {queue.url} (Ctrl-C stops)", highlight=False)
        with _Progress(err, enabled=not as_json and err.is_terminal) as progress:
            summary = run_queue(
                processor, queue, once=once, stop=stop, wait_s=wait, on_batch=progress.update
            )
    except DryRunRefused as exc:
        fail(str(exc), 3)
    except KitError as exc:
        fail(str(exc))
    if as_json:
        print_json({**summary.to_json(), "dry_run": processor.dry_run})
        return
    seconds = time.monotonic() - started
    verb = "would write" if processor.dry_run else "wrote"
    out.print(_summary_line(summary, verb, seconds), highlight=False)
    _listed(out, [f"  failed {m}: {r}" for m, r in summary.failures.items()], "failures")
    if out.is_terminal:  # piped: the summary line (and failures); --json has every version
        _listed(
            out,
            [
                f"  {verb} {v['entity_id']} {v['day']} {v['metric']} v{v['version']} = "
                f"{v['value']} ({v['input_count']} events)"
                for v in summary.written
            ],
            "versions",
        )


LISTED_LINES = 20


def _listed(console: Console, lines: list[str], what: str) -> None:
    for line in lines[:LISTED_LINES]:
        console.print(line, highlight=False, markup=False)
    if len(lines) > LISTED_LINES:
        console.print(f"  … and {len(lines) - LISTED_LINES} more {what} (--json lists all)")


def _summary_line(summary: LoopSummary, verb: str, seconds: float) -> str:
    rate = summary.messages / seconds if seconds > 0 else 0.0
    line = (
        f"{summary.messages} messages in {summary.batches} batches: {verb} "
        f"{summary.versions_written} versions, {summary.unchanged} unchanged, "
        f"{summary.failed} failed; {summary.windows_recomputed} windows recomputed in "
        f"{seconds:.1f} s ({rate:.1f} msg/s)"
    )
    if summary.released:
        line += f"; {summary.released} handed back to the queue on stop"
    return line


class _Progress:
    """One live line on a terminal: messages, windows recomputed, versions written, rate."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self._started = time.monotonic()
        self._summary = LoopSummary()
        self._live = Live(self, console=console, transient=True) if enabled else None

    def __enter__(self) -> _Progress:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._live is not None:
            self._live.stop()

    def update(self, summary: LoopSummary) -> None:
        self._summary = summary

    def __rich__(self) -> Text:  # rendered again at every refresh: the rate stays current
        s = self._summary
        seconds = time.monotonic() - self._started
        rate = s.messages / seconds if seconds > 0 else 0.0
        return Text(
            f"processing: {s.messages:,} messages, {s.windows_recomputed:,} windows recomputed, "
            f"{s.versions_written:,} versions written, {s.failed:,} failed, {rate:,.1f} msg/s, "
            f"{seconds:,.0f} s"
        )


def _versions_table(versions: list[AggregateVersion]) -> Table:
    table = Table("day", "metric", "version", "value", "inputs", "input hash", "computed", "replay")
    for v in versions:
        table.add_row(
            v.day,
            v.metric,
            str(v.version),
            str(v.value),
            str(v.input_count),
            v.input_hash[:12],
            v.computed_at,
            v.replay_id or "",
        )
    return table


@aggregates_app.command("show")
def show(
    entity_id: Annotated[str, typer.Argument(help="The entity.")],
    day: Annotated[str | None, typer.Option(help="Only this day (YYYY-MM-DD).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Every version of an entity's aggregates, oldest first."""
    try:
        versions = open_kit().aggregates().versions(entity_id, day)
    except KitError as exc:
        fail(str(exc))
    if as_json:
        print_json({"entity_id": entity_id, "versions": [v.to_json() for v in versions]})
        return
    if not versions:
        out.print(f"no aggregates for {entity_id}" + (f" on {day}" if day else ""))
        return
    print_table(out, _versions_table(versions))


@aggregates_app.command("diff")
def diff(
    entity_id: Annotated[str, typer.Argument(help="The entity.")],
    day: Annotated[str, typer.Argument(help="The day (YYYY-MM-DD).")],
    metric: Annotated[str | None, typer.Option(help="One metric (default: all).")] = None,
    from_version: Annotated[
        int | None, typer.Option("--from", help="Older version (default: the one before --to).")
    ] = None,
    to_version: Annotated[
        int | None, typer.Option("--to", help="Newer version (default: the latest).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Why did it change? Events added and removed between two versions, and the value change."""
    store = open_kit().aggregates()
    diffs = []
    single: list[str] = []  # metrics with one version only: nothing to compare, unchanged
    try:
        versions = store.versions(entity_id, day)
        metrics = sorted({v.metric for v in versions if metric in (None, v.metric)})
        if not metrics:
            fail(f"no aggregates for {entity_id} on {day}")
        for name in metrics:
            chain = {v.version: v for v in versions if v.metric == name}
            newer = chain.get(to_version if to_version is not None else max(chain))
            older_number = (
                from_version
                if from_version is not None
                else (newer.previous_version if newer else None)
            )
            explicit = from_version is not None or to_version is not None
            if not explicit and len(chain) == 1:
                single.append(f"{name} v{min(chain)}")
                continue
            if newer is None or older_number is None or older_number not in chain:
                fail(f"{name}: no such pair of versions (have {sorted(chain)})")
            diffs.append(diff_versions(store, chain[older_number], newer))
    except KitError as exc:
        fail(str(exc))
    if as_json:
        print_json({"diffs": [d.to_json() for d in diffs]})
        return
    changed = [d.metric for d in diffs if d.added or d.removed or d.from_value != d.to_value]
    out.print(f"changed: {', '.join(changed) or 'none'}", highlight=False)
    if single:
        out.print(f"one version only (unchanged): {', '.join(single)}", highlight=False)
    for d in diffs:
        doc = d.to_json()
        out.print(
            f"{d.metric} {d.day}: v{d.from_version} → v{d.to_version}: "
            f"{d.from_value} → {d.to_value} (change {doc['value_change']})",
            highlight=False,
        )
        for event_id in d.added:
            out.print(f"  + {event_id}")
        for event_id in d.removed:
            out.print(f"  - {event_id}")


app = commands()
app.command("process")(process)
