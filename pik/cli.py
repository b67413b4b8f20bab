"""The ``pik`` command line: the operator's front door.

Every command has ``--help``; failures print one line on stderr and exit non-zero (1: the kit or
the backend failed, 2: bad usage or configuration); ``--json`` prints one JSON document.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from consumers.ingest import IngestResult
from infra.errors import ConfigError, KitError, NotFound
from pik import cli_audit, cli_deploy, cli_process, cli_replay, cli_schemas, cli_tap
from pik.kit import build_kit
from pik.logs import configure_logging
from pik.settings import Settings

app = typer.Typer(
    name="pik",
    help="Pipeline Investigation Kit: keep the truth about every event, replay it, explain it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)

DEFAULT_AWS_PORT = 4566
DEFAULT_API_PORT = 8080

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts).")]
DataDir = Annotated[
    Path | None,
    typer.Option(help="Keep the embedded backend's state here across restarts."),
]


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def load_settings(**overrides: Any) -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        fail(f"bad configuration: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}", 2)
    configure_logging(settings.log_level)
    return settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


@contextlib.contextmanager
def backend(
    settings: Settings, *, aws: bool = False, port: int = DEFAULT_AWS_PORT, data_dir: Path | None
) -> Iterator[Settings]:
    """The settings to use: as given when an endpoint is set (or ``--aws``), else the embedded
    backend, started here and stopped on exit."""
    if settings.endpoint_url or aws:
        yield settings
        return
    from infra.local import EmbeddedAws

    with EmbeddedAws(port=port, data_dir=data_dir) as server:
        err.print(f"embedded AWS on {server.endpoint_url}", highlight=False)
        yield settings.model_copy(update={"endpoint_url": server.endpoint_url})


def wait_for_interrupt() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


@app.command()
def local(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = DEFAULT_AWS_PORT,
    data_dir: DataDir = None,
) -> None:
    """Run the embedded AWS (moto's server, requests serialized) in the foreground until Ctrl-C.

    Point other commands at it with AWS_ENDPOINT_URL=http://127.0.0.1:PORT.
    """
    load_settings()
    from infra.local import EmbeddedAws

    try:
        with EmbeddedAws(port=port, data_dir=data_dir) as server:
            out.print(f"embedded AWS listening on {server.endpoint_url} (Ctrl-C stops it)")
            wait_for_interrupt()
    except OSError as exc:
        fail(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}")


@app.command()
def bootstrap(as_json: JsonFlag = False) -> None:
    """Create the bucket, tables, queues and demo stream (idempotent: a second run changes nothing)."""
    settings = load_settings()
    try:
        result = build_kit(settings).bootstrap().run()
    except KitError as exc:
        fail(str(exc))
    if as_json:
        print_json(result)
        return
    for key, value in result.items():
        if key != "created":
            out.print(f"{key:18} {value}", highlight=False)
    out.print(f"created: {', '.join(result['created']) or 'nothing (all present)'}")


def serve_http(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from pik.http import create_app

    kit = build_kit(settings)
    api = create_app(kit)
    config = uvicorn.Config(api, host=host, port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    err.print(f"HTTP API on http://{host}:{port} (Ctrl-C stops it)", highlight=False)
    try:
        server.run()
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it already handled: the stop was clean
    finally:
        api.state.committer.close()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_API_PORT,
) -> None:
    """Serve the HTTP API (POST /ingest, /ingest/batch; GET /events/ID, /healthz, /metrics)."""
    serve_http(load_settings(), host, port)


@app.command()
def up(
    host: Annotated[str, typer.Option(help="HTTP API interface.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP API port.")] = DEFAULT_API_PORT,
    aws_port: Annotated[int, typer.Option(help="Embedded AWS port.")] = DEFAULT_AWS_PORT,
    aws: Annotated[
        bool, typer.Option("--aws", help="Use real AWS (or AWS_ENDPOINT_URL), no embedded one.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Everything in the foreground: embedded AWS, bootstrap, HTTP API, and a tap per binding.

    The embedded AWS starts unless AWS_ENDPOINT_URL is set or --aws is given; a tap runs for
    every [[tap]] binding of the config file (PIK_CONFIG). Ctrl-C stops it all. Without
    --data-dir, the embedded backend's state lives only as long as this process.
    """
    from pik.cli_tap import start_taps
    from pik.config import load_config

    settings = load_settings()
    try:
        config = load_config(settings.config)
        with backend(settings, aws=aws, port=aws_port, data_dir=data_dir) as live:
            kit = build_kit(live)
            kit.bootstrap().run()
            taps = start_taps(kit, config.taps)
            for binding in config.taps:
                err.print(f"tap on {binding.stream_name}", highlight=False)
            try:
                serve_http(live, host, port)
            finally:
                taps.stop()
    except KitError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot start: {exc}")


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
    from pik.ingest_file import ingest_lines

    settings = load_settings()
    kit = build_kit(settings)
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
    from pik.explain import explain as explain_event
    from pik.lineage import kit_lineage
    from pik.render import render_explain

    kit = build_kit(load_settings())
    try:
        doc = explain_event(event_id, kit.index, kit.reader, kit_lineage(kit))
    except NotFound as exc:
        fail(str(exc), 1)
    except KitError as exc:
        fail(str(exc))
    if as_json:
        print_json(doc)
    else:
        render_explain(out, doc)


@app.command()
def demo(
    out_file: Annotated[
        Path, typer.Option("--out", help="Where to write the incident's HTML report.")
    ] = Path("pik-demo-report.html"),
    as_json: JsonFlag = False,
    data_dir: DataDir = None,
) -> None:
    """A scripted incident on the embedded backend: three days of traffic over HTTP with a
    missing window, late data, a duplicate storm and bad events planted in it, found by the code
    of `pik gaps`, `pik lag`, `pik audit` and `pik explain`, then written up as `pik report`
    does. Uses AWS_ENDPOINT_URL instead when it is set. Exits 1 if a planted problem is missed."""
    from pik.demo import run_demo

    settings = load_settings()
    if settings.dry_run:
        fail("pik demo writes its incident to the backend: unset DRY_RUN", 2)
    try:
        with backend(settings, port=0, data_dir=data_dir) as live:
            result = run_demo(live, console=None if as_json else out, out=out_file)
    except KitError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {out_file}: {exc.strerror}", 2)
    if as_json:
        print_json(result)
    if not result["ok"]:
        missed = ", ".join(name for name, ok in result["checks"].items() if not ok)
        fail(f"the demo did not find what it planted: {missed}")


cli_replay.register(app)
cli_tap.register(app)
cli_audit.register(app)
cli_deploy.register(app)
cli_process.register(app)
cli_schemas.register(app)


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        err.print(f"error: {exc}")
        raise SystemExit(2) from exc
