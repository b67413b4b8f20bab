"""Drive the real ``pik`` command as a user would: subprocesses, real ports, real signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PIK = str(Path(sys.executable).with_name("pik"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIK_", "DRY_RUN"))}
    env.update(extra)
    return env


def run_pik(
    *args: str, env: dict[str, str] | None = None, input: bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [PIK, *args], env=env or base_env(), input=input, capture_output=True, timeout=timeout
    )


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(url)


@contextmanager
def running(*args: str, env: dict[str, str], ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    # Output goes to a file: a pipe nobody reads fills up (moto logs a traceback per refused
    # call) and stalls the server.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([PIK, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            try:
                wait_http(ready_url)
            except TimeoutError:
                proc.kill()
                proc.wait(timeout=10)
                log.seek(0)
                said = log.read().decode(errors="replace")[-2000:]
                raise AssertionError(f"pik {args} did not start: {said}") from None
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
