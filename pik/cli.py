"""The ``pik`` command line: the operator's front door.

Every command has ``--help``; failures print one line on stderr and exit non-zero (1: the kit or
the backend failed, 2: bad usage or configuration, or a port already in use); ``--json`` prints
one JSON document.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from consumers.ingest import IngestResult
from infra.errors import ConfigError, KitError, NotFound
from pik import cli_audit, cli_deploy, cli_process, cli_reindex, cli_replay, cli_schemas, cli_tap
from pik.kit import build_kit
from pik.logs import configure_logging
from pik.runtime import tune_collector
from pik.settings import Settings, describe_errors

if TYPE_CHECKING:
    from infra.local import EmbeddedAws
    from pik.http import HealthSource

app = typer.Typer(
    name="pik",
    help="Pipeline Investigation Kit: keep the truth about every event, replay it, explain it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts quote TOML tables ([[tap]], [schemas]): plain text, never rich markup.
    rich_markup_mode=None,
)
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


def print_error(message: str) -> None:
    """``error: <message>`` on stderr, the message as it is (``[[tap]]`` is not markup)."""
    err.print(Text.assemble(("error:", "red"), " ", message), highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    print_error(message)
    raise typer.Exit(code)


def load_settings(**overrides: Any) -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        fail(describe_errors(exc, os.environ), 2)
    configure_logging(settings.log_level)
    return settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def cannot_listen(exc: OSError, host: str, port: int, *, what: str, flag: str) -> NoReturn:
    """Fail (exit 2: the machine's state, not the kit, is in the way) naming the flag to use."""
    other = port + 1 if 0 < port < 65535 else "PORT"
    if exc.errno == errno.EADDRINUSE:
        fail(
            f"port {port} on {host} is in use: {what} cannot listen there "
            f"(stop what holds it, or use {flag} {other})",
            2,
        )
    # socket.create_server (the embedded AWS's) appends "(while attempting to bind ...)"
    reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
    fail(f"{what} cannot listen on {host}:{port}: {reason}", 2)


def listen(host: str, port: int, *, what: str, flag: str) -> socket.socket:
    """A listening socket, bound before anything starts so that a busy port is one clear line."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        sock.bind((host, port))
        sock.listen()
    except OSError as exc:
        sock.close()
        cannot_listen(exc, host, port, what=what, flag=flag)
    return sock


def start_embedded_aws(server: EmbeddedAws, *, flag: str) -> None:
    try:
        server.start()
    except ConfigError as exc:
        if isinstance(exc.__cause__, OSError):  # the bind failed
            cannot_listen(
                exc.__cause__, server.host, server.port, what="the embedded AWS", flag=flag
            )
        fail(str(exc), 2)


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

    server = EmbeddedAws(port=port, data_dir=data_dir)
    start_embedded_aws(server, flag="--aws-port")
    try:
        err.print(f"embedded AWS on {server.endpoint_url}", highlight=False, markup=False)
        yield settings.model_copy(update={"endpoint_url": server.endpoint_url})
    finally:
        server.stop()


def wait_for_interrupt() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


@app.command()
def local(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.", **PORT_RANGE)] = DEFAULT_AWS_PORT,
    data_dir: DataDir = None,
) -> None:
    """Run the embedded AWS (moto's server, requests serialized) in the foreground until Ctrl-C.

    Point other commands at it with AWS_ENDPOINT_URL=http://127.0.0.1:PORT.
    """
    load_settings()
    from infra.local import EmbeddedAws

    server = EmbeddedAws(port=port, data_dir=data_dir)
    start_embedded_aws(server, flag="--port")
    try:
        out.print(
            f"embedded AWS listening on {server.endpoint_url} (Ctrl-C stops it)", markup=False
        )
        wait_for_interrupt()
    finally:
        server.stop()


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
        if key not in ("created", "notes"):
            out.print(f"{key:18} {value}", highlight=False, markup=False)
    for note in result.get("notes", []):
        err.print(note, highlight=False, markup=False)
    out.print(f"created: {', '.join(result['created']) or 'nothing (all present)'}")


def listen_http(host: str, port: int) -> socket.socket:
    return listen(host, port, what="the HTTP API", flag="--port")


def serve_http(
    settings: Settings, listener: socket.socket, health: HealthSource | None = None
) -> None:
    """Serve the HTTP API on ``listener`` (from ``listen_http``) until Ctrl-C; ``health``
    adds the state of other components (``pik up``'s taps) to ``/healthz``."""
    import uvicorn

    from pik.http import create_app

    kit = build_kit(settings)
    api = create_app(kit, health=health)
    host, port = listener.getsockname()[:2]
    config = uvicorn.Config(
        api,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_keep_alive=5,  # an idle keep-alive connection is closed after 5 s
    )
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    err.print(f"HTTP API on http://{shown}:{port} (Ctrl-C stops it)", highlight=False, markup=False)
    try:
        server.run(sockets=[listener])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it already handled: the stop was clean
    finally:
        listener.close()
        api.state.committer.close()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", **PORT_RANGE)] = DEFAULT_API_PORT,
) -> None:
    """Serve the HTTP API (POST /ingest, /ingest/batch; GET /events/ID, /healthz, /metrics)."""
    settings = load_settings()
    serve_http(settings, listen_http(host, port))


@app.command()
def up(
    host: Annotated[str, typer.Option(help="HTTP API interface.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP API port.", **PORT_RANGE)] = DEFAULT_API_PORT,
    aws_port: Annotated[
        int, typer.Option(help="Embedded AWS port.", **PORT_RANGE)
    ] = DEFAULT_AWS_PORT,
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
    except ConfigError as exc:
        fail(str(exc), 2)
    listener = listen_http(host, port)  # before anything starts: a busy port fails at once
    try:
        with backend(settings, aws=aws, port=aws_port, data_dir=data_dir) as live:
            kit = build_kit(live)
            kit.bootstrap().run()
            taps = start_taps(kit, config.taps)
            for binding in config.taps:
                err.print(f"tap on {binding.stream_name}", highlight=False, markup=False)
            try:
                serve_http(live, listener, taps)
            finally:
                taps.stop()
    except ConfigError as exc:
        fail(str(exc), 2)
    except KitError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot start: {exc}")
    finally:
        listener.close()


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
cli_reindex.register(app)


def main() -> None:
    tune_collector()  # every command is long-running work over many records, or quick
    try:
        app()
    except ConfigError as exc:
        print_error(str(exc))
        raise SystemExit(2) from exc
