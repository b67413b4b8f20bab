"""``pik process`` (the opt-in processor) and ``pik aggregates show / diff``."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer
from rich.table import Table

from consumers.processor import diff_versions
from consumers.processor_loop import DryRunRefused, run_queue
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
    wait: Annotated[int, typer.Option(min=1, max=20, help="Long-poll seconds.")] = 20,
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

    For each (entity, day) a batch touches, the aggregate is recomputed from all of that day's
    accepted events; a version is written only when its inputs changed. DRY_RUN=true refuses
    (exit 3) without receiving anything: a receive counts toward the queue's maxReceiveCount.
    """
    kit = open_kit()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        processor = kit.processor()
        queue = kit.replay_queue(queue_url, visibility_timeout_s=visibility_timeout)
        if not once:
            err.print(f"processing {queue.url} (Ctrl-C stops)", highlight=False)
        summary = run_queue(processor, queue, once=once, stop=stop, wait_s=wait)
    except DryRunRefused as exc:
        fail(str(exc), 3)
    except KitError as exc:
        fail(str(exc))
    if as_json:
        print_json({**summary.to_json(), "dry_run": processor.dry_run})
        return
    verb = "would write" if processor.dry_run else "wrote"
    out.print(
        f"{summary.messages} messages in {summary.batches} batches: {verb} "
        f"{summary.versions_written} versions, {summary.unchanged} unchanged, "
        f"{summary.failed} failed"
    )
    for message_id, reason in summary.failures.items():
        out.print(f"  failed {message_id}: {reason}", highlight=False)
    for version in summary.written:
        out.print(
            f"  {verb} {version['entity_id']} {version['day']} {version['metric']} "
            f"v{version['version']} = {version['value']} ({version['input_count']} events)",
            highlight=False,
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
