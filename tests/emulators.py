"""A faithful Kinesis for the tests that moto cannot serve: npm ``kinesis-local`` (pinned).

moto's Kinesis keeps writing to closed parents after a reshard, never ends a closed shard and
never returns ``ChildShards``. ``kinesis-local`` does all three as AWS does (see
shared/EMULATORS.md). The suite installs it itself, once, into ``<repo>/.cache/`` (gitignored):
``npm install --no-save --prefix .cache/kinesis-local-0.6.2 kinesis-local@0.6.2``, under a file
lock so that parallel test workers install it once. ``kinesis_local()`` starts it on free ports
and stops it (SIGTERM) afterwards.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

KINESIS_LOCAL_VERSION = "0.6.2"
ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / f"kinesis-local-{KINESIS_LOCAL_VERSION}"
PACKAGE = CACHE / "node_modules" / "kinesis-local"
READY_TIMEOUT_S = 30.0
INSTALL_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 3.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ensure_kinesis_local() -> Path:
    """The installed package folder (installing it first when missing)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the kinesis-local emulator")
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE.parent / f".kinesis-local-{KINESIS_LOCAL_VERSION}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (PACKAGE / "main.js").is_file():
            done = subprocess.run(
                [
                    "npm",
                    "install",
                    "--no-save",
                    "--no-audit",
                    "--no-fund",
                    "--prefix",
                    str(CACHE),
                    f"kinesis-local@{KINESIS_LOCAL_VERSION}",
                ],
                capture_output=True,
                timeout=INSTALL_TIMEOUT_S,
            )
            if done.returncode != 0 or not (PACKAGE / "main.js").is_file():
                raise RuntimeError(
                    f"npm install kinesis-local@{KINESIS_LOCAL_VERSION} failed: "
                    f"{done.stderr.decode(errors='replace')[-2000:]}"
                )
    return PACKAGE


@contextmanager
def kinesis_local() -> Iterator[str]:
    """A running kinesis-local; yields its plain-HTTP endpoint URL."""
    package = ensure_kinesis_local()
    plain, tls = _free_port(), _free_port()
    env = {
        **os.environ,
        "KINESIS_MOCK_PLAIN_PORT": str(plain),
        "KINESIS_MOCK_TLS_PORT": str(tls),
        "KINESIS_MOCK_CERT_PATH": str(package / "server.json"),
        "LOG_LEVEL": "WARN",
    }
    proc = subprocess.Popen(
        ["node", str(package / "main.js")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    endpoint = f"http://127.0.0.1:{plain}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/healthcheck", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    _, stderr = proc.communicate(timeout=10)
                    raise RuntimeError(
                        f"kinesis-local did not start: {stderr.decode(errors='replace')[-2000:]}"
                    ) from None
                time.sleep(0.1)
        yield endpoint
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)  # its state is not needed afterwards: kill if slow
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()
