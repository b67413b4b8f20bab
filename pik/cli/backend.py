"""Where the commands run: the embedded AWS (or the configured endpoint), listening sockets and
the HTTP server that ``pik serve`` and ``pik up`` share."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from infra.errors import ConfigError
from pik.cli.common import DEFAULT_AWS_PORT, err, fail
from pik.kit import Kit
from pik.settings import Settings

if TYPE_CHECKING:
    from infra.local import EmbeddedAws
    from pik.http import HealthSource


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


def listen_http(host: str, port: int) -> socket.socket:
    return listen(host, port, what="the HTTP API", flag="--port")


def serve_http(kit: Kit, listener: socket.socket, health: HealthSource | None = None) -> None:
    """Serve the HTTP API on ``listener`` (from ``listen_http``) until Ctrl-C; ``health``
    adds the state of other components (``pik up``'s taps) to ``/healthz``."""
    import uvicorn

    from pik.http import create_app

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
