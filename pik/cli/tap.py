"""``pik tap`` and ``pik produce``: the Kinesis tap in the foreground, and realistic records
put on a stream. The tap itself is built by the kit (``Kit.tap_worker``)."""

from __future__ import annotations

import re
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from consumers.tap.binding import stream_name
from consumers.tap.fanout import DEFAULT_CONSUMER_NAME, FanOut
from consumers.tap.worker import (
    ShardsUnread,
)
from infra.errors import ConfigError, KitError
from infra.kinesis import StartAt, StartKind
from infra.leases import DEFAULT_LEASE_MS
from pik.cli.common import commands, fail, load_settings, open_kit, out, print_json
from pik.render import print_table
from pik.taps import tap_options

_PERCENT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*%?\s*$")
_RATE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(?:/s)?\s*$")


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM / SIGINT set the event: readers finish their batch, checkpoint, release."""
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _percent(text: str, option: str) -> float:
    found = _PERCENT.match(text)
    if not found or float(found.group(1)) > 100:
        raise typer.BadParameter(f"{option}: expected a percentage such as 5 or 5%")
    return float(found.group(1)) / 100


def _rate(text: str | None) -> float | None:
    if text is None:
        return None
    found = _RATE.match(text)
    if not found or float(found.group(1)) <= 0:
        raise typer.BadParameter("--rate: expected records per second such as 200 or 200/s")
    return float(found.group(1))


def render_summary(console: Console, doc: dict[str, Any]) -> None:
    verb = "would archive" if doc["dry_run"] else "archived"
    console.print(
        f"{doc['stream']}: read {doc['records']} records ({doc['user_records']} user records); "
        f"{verb}: {doc['accepted']} accepted, {doc['duplicates']} duplicates, "
        f"{doc['rejected']} rejected; {doc['redeliveries']} redeliveries absorbed; "
        f"max MillisBehindLatest {doc['millis_behind_latest']}",
        highlight=False,
        markup=False,
    )
    if doc.get("efo_consumer"):
        console.print(
            f"  enhanced fan-out through {doc['efo_consumer']}", highlight=False, markup=False
        )
    table = Table(
        "shard",
        "records",
        "user",
        "accepted",
        "dup",
        "rejected",
        "redelivered",
        "behind ms",
        "checkpoint",
        "state",
    )
    for s in doc["shards"]:
        state = "finished" if s["finished"] else s["outcome"]
        table.add_row(
            s["shard_id"],
            *(
                str(s[k])
                for k in (
                    "records",
                    "user_records",
                    "accepted",
                    "duplicates",
                    "rejected",
                    "redeliveries",
                )
            ),
            str(s["millis_behind_latest"]),
            str(s["checkpoint"]),
            state,
        )
    print_table(console, table)
    for reason, count in doc["reasons"].items():
        console.print(f"  rejected {reason}: {count}", highlight=False, markup=False)
    if doc["held_elsewhere"]:
        console.print(f"  held by other workers: {', '.join(doc['held_elsewhere'])}")


def _start_at(text: str) -> StartAt:
    """``--from``: trim_horizon, latest, or any time form the other commands take
    (``2026-12-02``, ``2026-12-02T05:00:00Z``, ``36h`` ago)."""
    from datetime import UTC, datetime

    from pik.investigate.window import WindowError, parse_when

    if text.strip().lower() in ("trim_horizon", "latest"):
        return StartAt.parse(text)
    try:
        return StartAt(StartKind.AT_TIMESTAMP, timestamp=parse_when(text, datetime.now(UTC)))
    except WindowError as exc:
        raise ConfigError(f"--from: {exc}; or trim_horizon / latest") from None


app = commands()


@app.command()
def tap(
    stream: Annotated[str, typer.Option("--stream", help="The stream's name or ARN.")],
    start: Annotated[
        str,
        typer.Option(
            "--from",
            help="Where to start when a shard has no checkpoint: trim_horizon, latest, or "
            "a time (AT_TIMESTAMP) as other commands take it: 2026-12-02, "
            "2026-12-02T05:00:00Z or 36h ago.",
        ),
    ] = "trim_horizon",
    once: Annotated[
        bool, typer.Option("--once", help="Drain every shard to its tip, then exit.")
    ] = False,
    lease_seconds: Annotated[
        float,
        typer.Option(
            min=1,
            help="Lease time: a dead worker's shards are taken over after this long.",
        ),
    ] = DEFAULT_LEASE_MS / 1000,
    efo: Annotated[
        bool,
        typer.Option(
            "--efo",
            help="Read with enhanced fan-out (SubscribeToShard through a registered stream "
            "consumer) instead of shared-throughput polling.",
        ),
    ] = False,
    efo_consumer: Annotated[
        str | None,
        typer.Option(
            "--efo-consumer",
            help=f"The stream consumer's name with --efo (default: the binding's "
            f"efo_consumer, else {DEFAULT_CONSUMER_NAME}); registered when missing.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Tap an existing Kinesis stream: archive and index every record, exactly once.

    Records are read as the stream's tap binding in the config file (PIK_CONFIG) says;
    an unbound stream is read as envelope-shaped JSON. Resumes from the checkpoints in the
    leases table; SIGTERM / Ctrl-C finish the current batch, checkpoint and release leases.
    """

    def show(doc: dict[str, Any]) -> None:
        if as_json:
            print_json(doc)
        else:
            render_summary(out, doc)

    settings = load_settings()
    try:
        position = _start_at(start)
        kit = open_kit(settings)
        binding = kit.binding_for(stream)
        fan_out = None
        if efo or binding.efo or efo_consumer is not None:
            name = efo_consumer or binding.efo_consumer or DEFAULT_CONSUMER_NAME
            fan_out = FanOut(name)
        worker = kit.tap_worker(
            binding,
            start=position,
            options=tap_options(lease_ms=int(lease_seconds * 1000)),
            fan_out=fan_out,
        )
        with _stop_on_signals() as stop:
            summary = worker.run(once=once, stop=stop)
    except ShardsUnread as exc:  # what was read is reported, and the exit says it is not all
        show(exc.summary.to_json())
        fail(str(exc))
    except ConfigError as exc:
        fail(str(exc), 2)
    except KitError as exc:
        fail(str(exc))
    show(summary.to_json())


@app.command()
def produce(
    stream: Annotated[str, typer.Option("--stream", help="An existing stream's name.")],
    count: Annotated[int, typer.Option(min=1, help="User records to put.")] = 1_000,
    rate: Annotated[
        str | None, typer.Option(help="User records per second (e.g. 200/s); default: max.")
    ] = None,
    kpl: Annotated[
        bool, typer.Option("--kpl", help="KPL-aggregate records (aws-kinesis-agg).")
    ] = False,
    entities: Annotated[int, typer.Option(min=1, help="Distinct customers.")] = 50,
    duplicates: Annotated[str, typer.Option(help="Share of producer retries, e.g. 5%.")] = "0",
    late: Annotated[str, typer.Option(help="Share of late events (10 min to 6 h).")] = "0",
    bad: Annotated[str, typer.Option(help="Share of records no binding can read.")] = "0",
    seed: Annotated[int | None, typer.Option(help="Seed for a repeatable run.")] = None,
    print_binding: Annotated[
        bool,
        typer.Option("--print-binding", help="Print the tap binding (TOML) for these records."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Put realistic events in a foreign (non-envelope) shape on a stream: plain or
    KPL-aggregated, with chosen shares of duplicates, late events and bad records."""
    from producers.produce import BINDING_TOML, Producer, ProduceSpec

    if print_binding:
        sys.stdout.write(BINDING_TOML.format(stream=stream))
        return
    spec = ProduceSpec(
        count=count,
        rate=_rate(rate),
        kpl=kpl,
        entities=entities,
        duplicates=_percent(duplicates, "--duplicates"),
        late=_percent(late, "--late"),
        bad=_percent(bad, "--bad"),
        seed=seed,
    )
    kit = open_kit()
    if kit.sink.dry_run:
        fail("DRY_RUN is set: pik produce would only write, so it does nothing", 2)
    try:
        report = Producer(kit.kinesis(), kit.clock).run(stream_name(stream), spec)
    except KitError as exc:
        fail(str(exc))
    doc = report.to_json()
    if as_json:
        print_json(doc)
        return
    shape = "KPL-aggregated into" if kpl else "as"
    out.print(
        f"put {doc['user_records']} records {shape} {doc['kinesis_records']} Kinesis records "
        f"on {stream} in {doc['seconds']} s ({doc['put_calls']} PutRecords calls, "
        f"{doc['retried_entries']} entries retried): {doc['valid']} valid "
        f"({doc['late']} late), {doc['duplicates']} duplicates, {doc['bad']} bad",
        highlight=False,
    )
