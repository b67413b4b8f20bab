"""Running the kit: the embedded AWS alone (``local``), ``bootstrap``, the HTTP API (``serve``)
and everything at once (``up``)."""

from __future__ import annotations

from typing import Annotated

import typer

from infra.errors import ConfigError, KitError
from pik.cli.backend import (
    backend,
    listen_http,
    serve_http,
    start_embedded_aws,
    wait_for_interrupt,
)
from pik.cli.common import (
    DEFAULT_API_PORT,
    DEFAULT_AWS_PORT,
    PORT_RANGE,
    DataDir,
    JsonFlag,
    commands,
    err,
    fail,
    kit_errors,
    load_settings,
    open_kit,
    out,
    print_json,
)
from pik.config import load_config
from pik.kit import build_kit

app = commands()


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
@kit_errors
def bootstrap(as_json: JsonFlag = False) -> None:
    """Create the bucket, tables, queues and demo stream (idempotent: a second run changes nothing)."""
    result = open_kit().bootstrap().run()
    if as_json:
        print_json(result)
        return
    for key, value in result.items():
        if key not in ("created", "notes"):
            out.print(f"{key:18} {value}", highlight=False, markup=False)
    out.print(f"created: {', '.join(result['created']) or 'nothing (all present)'}")
    for note in result["notes"]:
        err.print(note, highlight=False, markup=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", **PORT_RANGE)] = DEFAULT_API_PORT,
) -> None:
    """Serve the HTTP API (POST /ingest, /ingest/batch; GET /events/ID, /healthz, /metrics)."""
    kit = open_kit()
    serve_http(kit, listen_http(host, port))


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
    settings = load_settings()
    try:
        config = load_config(settings.config)  # a bad config file fails before anything starts
    except ConfigError as exc:
        fail(str(exc), 2)
    listener = listen_http(host, port)  # before anything starts: a busy port fails at once
    try:
        with backend(settings, aws=aws, port=aws_port, data_dir=data_dir) as live:
            kit = build_kit(live, config=config)
            kit.bootstrap().run()
            taps = kit.start_taps()
            for binding in kit.config.taps:
                err.print(f"tap on {binding.stream_name}", highlight=False, markup=False)
            try:
                # One kit for the HTTP API and the taps: one sink, one set of metrics.
                serve_http(kit, listener, taps)
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
