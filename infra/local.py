"""The embedded AWS: moto's server, started by the kit itself on 127.0.0.1.

``EmbeddedAws`` builds moto's WSGI app and serves it with werkzeug in a daemon thread, adding
three things moto's own ``ThreadedMotoServer`` lacks:

**One request at a time.** moto's models are not thread-safe: four threads writing one Kinesis
shard lost 413 of 20,000 records, and racing conditional DynamoDB puts or S3 ``If-None-Match``
puts let two writers win. A middleware holds one lock around each request, reading the whole
request and the whole response inside it. moto's state is process-global (module-level
backends), so the lock is too: every ``EmbeddedAws`` in a process shares both, and starting
one with a ``data_dir`` replaces the state the others serve.

**Long polls outside the lock.** An SQS ReceiveMessage with a wait time waits inside moto and
would freeze every other call. It is rewritten to WaitTimeSeconds 0 (JSON and query protocols;
a queue's ``ReceiveMessageWaitTimeSeconds`` default is looked up) and the wait is emulated
outside the lock: ask, and while nothing came back, release the lock, sleep 50 ms, ask again.

**Optional persistence.** With a ``data_dir``, every state-changing request that succeeded
(status < 400) is appended to ``data_dir/journal.bin`` while the lock is held, so the journal
order is the order moto applied them. Reads (GET/HEAD, GetItem, Query, GetRecords,
ReceiveMessage, ...) are not recorded. ``start()`` resets moto's state and replays the journal
before serving; ``POST /moto-api/reset`` empties the journal. Known limits:

- SQS is at-least-once across a restart: receives are not replayed and receipt handles and
  message ids are random, so a replayed DeleteMessage matches nothing. Messages that were
  received (deleted or not) come back as new, visible messages with new ids.
- Kinesis ``ApproximateArrivalTimestamp``, S3 ``LastModified``, DynamoDB stream ARNs and other
  server-side clocks become the replay time. Kinesis sequence numbers are per-shard counters,
  so they survive. S3 multipart upload ids are mapped to the replayed ones; S3 version ids are
  not, so a recorded request naming a version id fails on replay (it is counted and logged).
- Replay time grows with the journal (every write since the last reset is re-executed; nothing
  compacts it). Records are flushed, not fsynced: a process crash loses nothing, a power loss
  may lose the tail; a torn last record is dropped on the next start.

It also raises moto's DynamoDB transaction limit to AWS's (``AWS_TRANSACTION_MAX_ITEMS``). moto
is imported by ``start()``, not at import time: it reads its settings from the environment.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, urlencode, urlsplit
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment
from xml.sax.saxutils import escape

from werkzeug.serving import BaseWSGIServer, make_server

from infra import moto_fixes
from infra.errors import BackendError, ConfigError

__all__ = ["AWS_TRANSACTION_MAX_ITEMS", "EmbeddedAws"]

log = logging.getLogger(__name__)

# AWS raised the TransactWriteItems and TransactGetItems limits from 25 to 100 items in 2022.
# moto 5.2.5 checks 100 for writes in its model, but still refuses a TransactGetItems of more
# than 25 through the module constant moto.dynamodb.responses.TRANSACTION_MAX_ITEMS.
AWS_TRANSACTION_MAX_ITEMS = 100

LONG_POLL_INTERVAL_SECONDS = 0.05
READY_TIMEOUT_SECONDS = 10.0
JOURNAL_NAME = "journal.bin"
JOURNAL_MAGIC = b"PIK-JOURNAL-1\n"
_RECORD_HEADER = struct.Struct(">IQ")  # metadata length, body length

# moto's backends are module-level, so the lock that guards them is too.
_MOTO_LOCK = threading.Lock()

_READ_ONLY_OPERATIONS = frozenset(
    {
        # DynamoDB
        "GetItem", "BatchGetItem", "Query", "Scan", "DescribeTable", "ListTables",
        "DescribeTimeToLive", "DescribeContinuousBackups",
        # Kinesis (and DynamoDB Streams)
        "GetRecords", "GetShardIterator", "DescribeStream", "DescribeStreamSummary",
        "ListShards", "ListStreams",
        # SQS
        "ReceiveMessage", "GetQueueUrl", "GetQueueAttributes", "ListQueues",
    }
)  # fmt: skip
_READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What moto reads from a request: routing (Host, Authorization, X-Amz-Target), S3 object
# metadata and checksums (x-amz-*, Content-*), and the request line itself.
_RECORDED_KEYS = frozenset(
    {"REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "REQUEST_URI", "RAW_URI", "CONTENT_TYPE"}
    | {"HTTP_HOST", "HTTP_AUTHORIZATION", "HTTP_CONTENT_MD5", "HTTP_CONTENT_ENCODING"}
    | {"HTTP_CONTENT_LANGUAGE", "HTTP_CONTENT_DISPOSITION", "HTTP_CACHE_CONTROL", "HTTP_EXPIRES"}
)
_PRESERVED_NAMES_KEY = "moto.preserved_header_names"  # moto.core.request: underscored headers
_FORM = "application/x-www-form-urlencoded"
_UPLOAD_ID = re.compile(rb"<UploadId>([^<]+)</UploadId>")

_RESET: dict[str, Any] = {
    "environ": {"REQUEST_METHOD": "POST", "PATH_INFO": "/moto-api/reset", "QUERY_STRING": ""},
    "preserved": {},
}


@dataclass(frozen=True, slots=True)
class _Response:
    status: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True, slots=True)
class _LongPoll:
    body: bytes  # the same ReceiveMessage with WaitTimeSeconds 0
    wait_seconds: int | None  # None: the queue's ReceiveMessageWaitTimeSeconds applies
    queue_url: str
    json_protocol: bool


class _Journal:
    """Length-prefixed records: metadata as JSON (the WSGI environ moto needs), then the body."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")
        if self._file.tell() == 0:
            self._file.write(JOURNAL_MAGIC)
            self._file.flush()

    @staticmethod
    def read(path: Path) -> Iterator[tuple[dict[str, Any], bytes]]:
        """Yield every whole record; cut a torn tail off the file so appends stay aligned."""
        if not path.exists():
            return
        with path.open("r+b") as file:
            magic = file.read(len(JOURNAL_MAGIC))
            if not magic:
                return
            if magic != JOURNAL_MAGIC:
                raise ConfigError(f"{path} is not a pik journal (unexpected header)")
            good = file.tell()
            while header := file.read(_RECORD_HEADER.size):
                record = _read_record(file, header)
                if record is None:
                    log.warning("dropping a torn record at the end of %s (offset %d)", path, good)
                    file.truncate(good)
                    return
                yield record
                good = file.tell()

    def append(self, meta: dict[str, Any], body: bytes) -> None:
        encoded = json.dumps(meta).encode()
        self._file.write(_RECORD_HEADER.pack(len(encoded), len(body)) + encoded + body)
        self._file.flush()

    def clear(self) -> None:
        self._file.truncate(0)
        self._file.write(JOURNAL_MAGIC)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _read_record(file: BinaryIO, header: bytes) -> tuple[dict[str, Any], bytes] | None:
    if len(header) < _RECORD_HEADER.size:
        return None
    meta_len, body_len = _RECORD_HEADER.unpack(header)
    meta, body = file.read(meta_len), file.read(body_len)
    if len(meta) < meta_len or len(body) < body_len:
        return None
    return json.loads(meta), body


def _operation(environ: WSGIEnvironment, body: bytes) -> str:
    target: str = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return target.rsplit(".", 1)[-1]
    params = dict(parse_qsl(environ.get("QUERY_STRING", "")))
    if environ.get("CONTENT_TYPE", "").startswith(_FORM):
        params.update(parse_qsl(body.decode("utf-8", "replace")))
    return params.get("Action", "")


def _changes_state(environ: WSGIEnvironment, body: bytes) -> bool:
    if environ["REQUEST_METHOD"] in _READ_ONLY_METHODS:
        return False
    return _operation(environ, body) not in _READ_ONLY_OPERATIONS


def _record_meta(environ: WSGIEnvironment) -> dict[str, Any]:
    kept = {
        key: value
        for key, value in environ.items()
        if key in _RECORDED_KEYS or key.startswith("HTTP_X_AMZ_")
    }
    return {"environ": kept, "preserved": environ.get(_PRESERVED_NAMES_KEY) or {}}


def _replay_environ(meta: dict[str, Any], server_name: str, server_port: int) -> WSGIEnvironment:
    environ: WSGIEnvironment = {
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "SCRIPT_NAME": "",
        "SERVER_NAME": server_name,
        "SERVER_PORT": str(server_port),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        _PRESERVED_NAMES_KEY: dict(meta["preserved"]),
    }
    environ.update(meta["environ"])
    return environ


def _upload_id(response_body: bytes) -> str | None:
    """The id in a CreateMultipartUpload answer."""
    if not response_body.startswith(b"<") or b"<InitiateMultipartUploadResult" not in response_body:
        return None
    found = _UPLOAD_ID.search(response_body)
    return found.group(1).decode() if found else None


def _rename_upload_id(environ: WSGIEnvironment, upload_ids: dict[str, str]) -> None:
    found = re.search(r"(?:^|&)uploadId=([^&]*)", environ.get("QUERY_STRING", ""))
    if found and found.group(1) in upload_ids:
        old, new = f"uploadId={found.group(1)}", f"uploadId={upload_ids[found.group(1)]}"
        for key in ("QUERY_STRING", "REQUEST_URI", "RAW_URI"):
            if key in environ:
                environ[key] = environ[key].replace(old, new)


def _sqs_long_poll(environ: WSGIEnvironment, body: bytes) -> _LongPoll | None:
    """A ReceiveMessage that may wait, rewritten not to; None for anything else."""
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target == "AmazonSQS.ReceiveMessage":
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return None
        if not isinstance(payload, dict):
            return None
        wait = payload.get("WaitTimeSeconds")
        if wait is not None and (not isinstance(wait, int) or not 0 < wait <= 20):
            return None  # no wait, or moto answers the validation error at once
        payload["WaitTimeSeconds"] = 0
        queue_url = str(payload.get("QueueUrl", ""))
        return _LongPoll(json.dumps(payload).encode(), wait, queue_url, json_protocol=True)
    if target or not environ.get("CONTENT_TYPE", "").startswith(_FORM):
        return None
    params = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    named = dict(params)
    if named.get("Action") != "ReceiveMessage":
        return None
    form_wait: int | None = None
    if "WaitTimeSeconds" in named:
        try:
            form_wait = int(named["WaitTimeSeconds"])
        except ValueError:
            return None
        if not 0 < form_wait <= 20:
            return None
    rewritten = [(k, v) for k, v in params if k != "WaitTimeSeconds"] + [("WaitTimeSeconds", "0")]
    queue_url = named.get("QueueUrl") or (
        f"http://{environ.get('HTTP_HOST', '')}{environ.get('PATH_INFO', '')}"
    )
    return _LongPoll(urlencode(rewritten).encode(), form_wait, queue_url, json_protocol=False)


def _ends_wait(response: _Response, json_protocol: bool) -> bool:
    if not response.status.startswith("200"):
        return True
    if json_protocol:
        try:
            return bool(json.loads(response.body or b"{}").get("Messages"))
        except (ValueError, AttributeError):
            return True
    return b"<Message>" in response.body


class _SerializedApp:
    """WSGI middleware: one request at a time inside moto, long polls waiting outside."""

    def __init__(self, app: WSGIApplication, journal: _Journal | None) -> None:
        self._app = app
        self.journal = journal
        self.stopping = threading.Event()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body = _read_body(environ)
        long_poll = _sqs_long_poll(environ, body)
        if long_poll is None:
            response = self.apply(environ, body)
        else:
            response = self._long_poll(environ, long_poll)
        start_response(response.status, response.headers)
        return [response.body]

    def apply(self, environ: WSGIEnvironment, body: bytes, *, record: bool = True) -> _Response:
        environ = dict(environ)  # retries and sub-requests must not see a used environ
        meta = _record_meta(environ) if record and self.journal is not None else None
        with _MOTO_LOCK:
            response = _call(self._app, environ, body)
            journal = self.journal  # None once stop() closed it
            if meta is not None and journal is not None and int(response.status[:3]) < 400:
                if environ.get("PATH_INFO", "") == "/moto-api/reset":
                    journal.clear()
                elif _changes_state(environ, body):
                    if upload_id := _upload_id(response.body):
                        meta["upload_id"] = upload_id  # random: replay maps it to the new one
                    journal.append(meta, body)
        return response

    def _long_poll(self, environ: WSGIEnvironment, poll: _LongPoll) -> _Response:
        wait = poll.wait_seconds
        if wait is None:
            wait = self._queue_wait_seconds(environ, poll.queue_url)
        deadline = time.monotonic() + wait
        while True:
            response = self.apply(environ, poll.body)
            if _ends_wait(response, poll.json_protocol) or time.monotonic() >= deadline:
                return response
            if self.stopping.wait(LONG_POLL_INTERVAL_SECONDS):
                return response

    def _queue_wait_seconds(self, environ: WSGIEnvironment, queue_url: str) -> int:
        """The queue's ReceiveMessageWaitTimeSeconds, asked through moto's own API."""
        query = dict(environ)
        query.update(
            {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": "/",
                "QUERY_STRING": "",
                "CONTENT_TYPE": "application/x-amz-json-1.0",
                "HTTP_X_AMZ_TARGET": "AmazonSQS.GetQueueAttributes",
            }
        )
        payload = {"QueueUrl": queue_url, "AttributeNames": ["ReceiveMessageWaitTimeSeconds"]}
        response = self.apply(query, json.dumps(payload).encode(), record=False)
        try:
            attributes = json.loads(response.body)["Attributes"]
            return int(attributes.get("ReceiveMessageWaitTimeSeconds", 0))
        except (ValueError, KeyError, TypeError):
            return 0  # the receive itself then reports the error (e.g. a missing queue)


def _read_body(environ: WSGIEnvironment) -> bytes:
    if environ.get("wsgi.input_terminated"):  # chunked transfer: read to the end
        return bytes(environ["wsgi.input"].read())
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return bytes(environ["wsgi.input"].read(length)) if length > 0 else b""


def _call(app: WSGIApplication, environ: WSGIEnvironment, body: bytes) -> _Response:
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("wsgi.input_terminated", None)
    captured: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(
        status: str,
        headers: list[tuple[str, str]],
        exc_info: tuple[type[BaseException], BaseException, TracebackType] | None = None,
    ) -> Any:
        captured[:] = [(status, headers)]
        return lambda _data: None  # moto never uses the legacy write() callable

    try:
        result = app(environ, start_response)  # type: ignore[arg-type]
    except NotImplementedError as exc:
        return _not_implemented(environ, exc)
    try:
        data = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status, headers = captured[0]
    return _Response(status, list(headers), data)


def _not_implemented(environ: WSGIEnvironment, exc: NotImplementedError) -> _Response:
    """An action moto lacks (``SubscribeToShard``) as AWS would refuse it: a 501 error in the
    caller's protocol. moto raises instead, which werkzeug logs as a multi-KB traceback and
    answers 500, which botocore retries: a dozen tracebacks per call in the terminal."""
    message = " ".join(str(exc).split())
    if environ.get("HTTP_X_AMZ_TARGET"):  # the JSON protocols (Kinesis, DynamoDB, SQS)
        body = json.dumps({"__type": "NotImplemented", "message": message}).encode()
        kind = "application/x-amz-json-1.1"
    else:
        body = (
            "<?xml version='1.0' encoding='UTF-8'?><ErrorResponse><Error><Code>NotImplemented"
            f"</Code><Message>{escape(message)}</Message></Error></ErrorResponse>"
        ).encode()
        kind = "text/xml"
    headers = [("Content-Type", kind), ("Content-Length", str(len(body)))]
    return _Response("501 Not Implemented", headers, body)


def _build_moto_app() -> tuple[WSGIApplication, type[Any]]:
    import moto.dynamodb.responses as dynamodb_responses
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )

    dynamodb_responses.TRANSACTION_MAX_ITEMS = AWS_TRANSACTION_MAX_ITEMS
    moto_fixes.apply()
    return DomainDispatcherApplication(create_backend_app), MotoRequestHandler


class EmbeddedAws:
    """moto's server on ``host:port`` (0: a free port), serialized and optionally persistent."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 4566, data_dir: Path | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.data_dir = data_dir
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._app: _SerializedApp | None = None

    @property
    def endpoint_url(self) -> str:
        port = self._server.server_address[1] if self._server is not None else self.port
        if port == 0:
            raise RuntimeError("the port is chosen by start(); call it first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}"

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the embedded AWS is already running")
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        moto_app, handler = _build_moto_app()
        journal = None
        if self.data_dir is not None:
            journal = self._restore(_SerializedApp(moto_app, None), self.data_dir / JOURNAL_NAME)
        self._app = _SerializedApp(moto_app, journal)
        # Bound here because werkzeug answers a busy port with sys.exit(1), not an exception.
        try:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            listener = socket.create_server((self.host, self.port), family=family)
        except OSError as exc:
            if journal is not None:
                journal.close()
            self._app = None
            address = f"{self.host}:{self.port}"
            raise ConfigError(f"the embedded AWS cannot listen on {address}: {exc}") from exc
        with listener:  # werkzeug serves a duplicate of this socket
            self._server = make_server(
                self.host,
                self.port,
                self._app,
                threaded=True,
                request_handler=handler,
                fd=listener.fileno(),
            )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"embedded-aws:{self._server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        self._wait_until_answering()

    def _restore(self, app: _SerializedApp, path: Path) -> _Journal:
        """Reset moto (its state is the journal's alone) and re-execute every recorded write."""
        app.apply(_replay_environ(_RESET, self.host, self.port), b"", record=False)
        replayed = failed = 0
        started = time.monotonic()
        upload_ids: dict[str, str] = {}  # S3 multipart upload id: recorded -> replayed
        for meta, body in _Journal.read(path):
            environ = _replay_environ(meta, self.host, self.port)
            _rename_upload_id(environ, upload_ids)
            replayed += 1
            try:
                response = app.apply(environ, body, record=False)
            except Exception:  # served live, werkzeug would have answered 500
                log.debug("replaying %s failed", environ.get("RAW_URI"), exc_info=True)
                failed += 1
                continue
            failed += int(response.status[:3]) >= 400
            if "upload_id" in meta and (new_id := _upload_id(response.body)):
                upload_ids[meta["upload_id"]] = new_id
        if replayed:
            log.info(
                "replayed %d requests from %s in %.1f s (%d refused, e.g. deletes by stale "
                "SQS receipt handle)",
                replayed,
                path,
                time.monotonic() - started,
                failed,
            )
        return _Journal(path)

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        address = urlsplit(self.endpoint_url)
        host, port = address.hostname or self.host, address.port
        while True:
            connection = http.client.HTTPConnection(host, port, timeout=1.0)
            try:
                connection.request("GET", "/moto-api/config")
                connection.getresponse().read()
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise BackendError(
                        f"the embedded AWS did not answer on {host}:{port}", service="local"
                    ) from exc
                time.sleep(0.02)
            finally:
                connection.close()

    def stop(self) -> None:
        if self._app is not None:
            self._app.stopping.set()  # long polls answer now
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        if self._app is not None and self._app.journal is not None:
            with _MOTO_LOCK:  # no request is half-way through writing a record
                self._app.journal.close()
                self._app.journal = None
        self._server = self._thread = self._app = None

    def __enter__(self) -> EmbeddedAws:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
