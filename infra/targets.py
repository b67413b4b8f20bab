"""Replay targets (``ReplayTarget``): where replayed messages go, sent in batches.

One base class holds the logic: cutting messages into batches within the target's limits, and
retrying the entries of a batch that failed with exponential backoff and full jitter. Each
backend implements one small method, ``_send(batch)``, that sends one batch and returns its
failed entries. Backends: SQS (standard or FIFO, SendMessageBatch of 10), Kinesis (PutRecords of
up to 500, partition key = entity), an NDJSON file (local debugging) and memory (tests).

``send_batch`` never loses track of a message: every entry of the batch ends either in
``sent`` or in ``failed`` (with a reason), whatever happened on the way. An entry is retried only
while it has not been accepted, so a batch never sends a message twice.

Errors::

    KitError
     ├── ConfigError
     │    └── InvalidTarget   a target spec that is malformed, refused, or names nothing
     └── BackendError         raised by ``_send`` for a whole call: the entries are retried
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from infra.errors import BackendError, ConfigError

__all__ = [
    "KINESIS_MAX_BATCH_BYTES",
    "KINESIS_MAX_BATCH_RECORDS",
    "KINESIS_MAX_RECORD_BYTES",
    "MAX_SEND_ATTEMPTS",
    "SQS_MAX_BATCH_BYTES",
    "SQS_MAX_BATCH_MESSAGES",
    "BatchOutcome",
    "EntryFailure",
    "InvalidTarget",
    "KinesisTarget",
    "MemoryTarget",
    "NdjsonFileTarget",
    "ReplayTarget",
    "SqsTarget",
    "TargetCrash",
    "TargetMessage",
    "check_target_spec",
    "fifo_dedup_id",
    "message_group_id",
    "open_target",
]

SQS_MAX_BATCH_MESSAGES = 10
SQS_MAX_BATCH_BYTES = 256 * 1024  # the sum of bodies of one SendMessageBatch, and one body
KINESIS_MAX_BATCH_RECORDS = 500
KINESIS_MAX_BATCH_BYTES = 5 * 1024 * 1024
KINESIS_MAX_RECORD_BYTES = 1024 * 1024  # data plus partition key
FILE_MAX_BATCH_LINES = 500
SQS_MAX_ID_CHARS = 128  # MessageGroupId and MessageDeduplicationId
KINESIS_MAX_PARTITION_KEY_CHARS = 256
MAX_SEND_ATTEMPTS = 6
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0
UNKNOWN_GROUP = "_unknown"

# SQS ids: alphanumerics and punctuation only.
_SQS_ID_CHARS = re.compile(r"^[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]+$")
_QUEUE_URL = re.compile(r"^https?://[^/]+/[^/]+/[^/]+$")
_KINESIS_ARN = re.compile(r"^arn:aws[\w-]*:kinesis:[\w-]+:\d{12}:stream/([\w.-]+)$")
_RETRYABLE_KINESIS = {"ProvisionedThroughputExceededException", "InternalFailure"}
_MISSING_QUEUE_CODES = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}


class InvalidTarget(ConfigError):
    """A target that cannot be used: malformed, not allowed here, or not existing."""


class TargetCrash(RuntimeError):
    """Raised by ``MemoryTarget`` to simulate a process killed in the middle of a replay."""


@dataclass(frozen=True, slots=True)
class TargetMessage:
    """One message, ready to send. ``key`` is unique within a replay."""

    key: str
    body: str
    group: str  # FIFO message group / Kinesis partition key: the entity
    dedup_id: str  # FIFO deduplication id

    @property
    def size(self) -> int:
        return len(self.body.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class EntryFailure:
    index: int  # position in the batch given to ``_send``
    reason: str
    retryable: bool


@dataclass(slots=True)
class BatchOutcome:
    sent: list[str] = field(default_factory=list)  # keys, in the order they were accepted
    failed: dict[str, str] = field(default_factory=dict)  # key → reason (after every retry)
    attempts: int = 0


def _bounded_id(text: str, limit: int = SQS_MAX_ID_CHARS) -> str:
    if len(text) <= limit and _SQS_ID_CHARS.match(text):
        return text
    return "h:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def fifo_dedup_id(replay_id: str, key: str) -> str:
    """``<replay_id>:<event_id>``; a key that is not a plain event id (a duplicate or rejected
    occurrence, ``event_id/occurrence``) is hashed so the id stays within SQS's 128 characters."""
    if "/" not in key:
        return _bounded_id(f"{replay_id}:{key}")
    return _bounded_id(f"{replay_id}:{hashlib.sha256(key.encode('utf-8')).hexdigest()}")


def message_group_id(entity_id: str | None) -> str:
    """The FIFO message group of an entity (hashed when SQS would refuse the entity id)."""
    return _bounded_id(entity_id or UNKNOWN_GROUP)


def _backoff_delay(attempt: int, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


class ReplayTarget(ABC):
    """Send messages in batches; retry failed entries; report each entry's fate."""

    max_batch_messages: int = SQS_MAX_BATCH_MESSAGES
    max_batch_bytes: int = SQS_MAX_BATCH_BYTES
    max_message_bytes: int = SQS_MAX_BATCH_BYTES
    fifo: bool = False
    kind: str = "target"

    def __init__(self, *, sleep: Callable[[float], None] = time.sleep, seed: int | None = None):
        self._sleep = sleep
        self._rng = random.Random(seed)

    @property
    @abstractmethod
    def description(self) -> str:
        """What the target is, for job records and logs (a queue URL, ``kinesis://s``, ...)."""

    @abstractmethod
    def _send(self, batch: Sequence[TargetMessage]) -> list[EntryFailure]:
        """Send one batch (within the limits); return the entries that were not accepted."""

    def close(self) -> None:  # noqa: B027 - most targets hold nothing to release
        """Release what the target holds (files); sending after close is an error."""

    def batches(
        self, messages: Sequence[TargetMessage], max_messages: int | None = None
    ) -> Iterator[list[TargetMessage]]:
        """Consecutive batches within the count and byte limits, in order."""
        limit = min(max_messages or self.max_batch_messages, self.max_batch_messages)
        batch: list[TargetMessage] = []
        size = 0
        for message in messages:
            if batch and (len(batch) >= limit or size + message.size > self.max_batch_bytes):
                yield batch
                batch, size = [], 0
            batch.append(message)
            size += message.size
        if batch:
            yield batch

    def send_batch(self, batch: Sequence[TargetMessage]) -> BatchOutcome:
        outcome = BatchOutcome()
        pending: list[TargetMessage] = []
        for message in batch:
            if message.size > self.max_message_bytes:
                outcome.failed[message.key] = (
                    f"message of {message.size} bytes is over the target's limit of "
                    f"{self.max_message_bytes}"
                )
            else:
                pending.append(message)
        last_reason: dict[str, str] = {}
        while pending and outcome.attempts < MAX_SEND_ATTEMPTS:
            if outcome.attempts:
                self._sleep(_backoff_delay(outcome.attempts, self._rng))
            outcome.attempts += 1
            try:
                failures = self._send(pending)
            except BackendError as exc:  # the whole call failed: nothing of it was accepted
                failures = [EntryFailure(i, str(exc), True) for i in range(len(pending))]
            failed_at = {f.index: f for f in failures}
            retry: list[TargetMessage] = []
            for i, message in enumerate(pending):
                failure = failed_at.get(i)
                if failure is None:
                    outcome.sent.append(message.key)
                elif failure.retryable:
                    retry.append(message)
                    last_reason[message.key] = failure.reason
                else:
                    outcome.failed[message.key] = failure.reason
            pending = retry
        for message in pending:
            outcome.failed[message.key] = (
                f"{last_reason.get(message.key, 'failed')} (after {outcome.attempts} attempts)"
            )
        return outcome


# -- SQS ------------------------------------------------------------------------------------------
class SqsTarget(ReplayTarget):
    kind = "sqs"

    def __init__(self, sqs_client: Any, queue_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sqs = sqs_client
        self.queue_url = queue_url
        self.fifo = queue_url.endswith(".fifo")

    @property
    def description(self) -> str:
        return self.queue_url

    def _send(self, batch: Sequence[TargetMessage]) -> list[EntryFailure]:
        entries: list[dict[str, Any]] = []
        for i, message in enumerate(batch):
            entry: dict[str, Any] = {"Id": str(i), "MessageBody": message.body}
            if self.fifo:
                entry["MessageGroupId"] = message.group
                entry["MessageDeduplicationId"] = message.dedup_id
            entries.append(entry)
        try:
            out = self._sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _MISSING_QUEUE_CODES:
                raise InvalidTarget(f"queue {self.queue_url} does not exist") from exc
            raise BackendError(
                f"SQS SendMessageBatch to {self.queue_url}: {code}", service="sqs", code=code
            ) from exc
        except BotoCoreError as exc:
            raise BackendError(f"SQS SendMessageBatch: {exc}", service="sqs") from exc
        return [
            EntryFailure(
                int(f["Id"]),
                f"{f.get('Code', 'Failed')}: {f.get('Message', '')}".strip(": "),
                retryable=not f.get("SenderFault", False),
            )
            for f in out.get("Failed", [])
        ]


# -- Kinesis --------------------------------------------------------------------------------------
class KinesisTarget(ReplayTarget):
    kind = "kinesis"
    max_batch_messages = KINESIS_MAX_BATCH_RECORDS
    max_batch_bytes = KINESIS_MAX_BATCH_BYTES
    # the record limit counts the partition key too (up to 256 characters of UTF-8)
    max_message_bytes = KINESIS_MAX_RECORD_BYTES - KINESIS_MAX_PARTITION_KEY_CHARS * 4

    def __init__(self, kinesis_client: Any, stream: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._kinesis = kinesis_client
        self.stream = stream
        self._stream_arg = {"StreamARN": stream} if stream.startswith("arn:") else {}
        if not self._stream_arg:
            self._stream_arg = {"StreamName": stream}

    @property
    def description(self) -> str:
        return self.stream if self.stream.startswith("arn:") else f"kinesis://{self.stream}"

    def _send(self, batch: Sequence[TargetMessage]) -> list[EntryFailure]:
        records = [
            {
                "Data": m.body.encode("utf-8"),
                "PartitionKey": (m.group or UNKNOWN_GROUP)[:KINESIS_MAX_PARTITION_KEY_CHARS],
            }
            for m in batch
        ]
        try:
            out = self._kinesis.put_records(Records=records, **self._stream_arg)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                raise InvalidTarget(f"stream {self.stream} does not exist") from exc
            raise BackendError(
                f"Kinesis PutRecords to {self.stream}: {code}", service="kinesis", code=code
            ) from exc
        except BotoCoreError as exc:
            raise BackendError(f"Kinesis PutRecords: {exc}", service="kinesis") from exc
        failures = []
        for i, record in enumerate(out.get("Records", [])):
            code = record.get("ErrorCode")
            if code:
                reason = f"{code}: {record.get('ErrorMessage', '')}".strip(": ")
                failures.append(EntryFailure(i, reason, retryable=code in _RETRYABLE_KINESIS))
        return failures


# -- NDJSON file ----------------------------------------------------------------------------------
class NdjsonFileTarget(ReplayTarget):
    """Appends one JSON line per message; each batch is flushed and fsynced before it counts."""

    kind = "file"
    max_batch_messages = FILE_MAX_BATCH_LINES
    max_batch_bytes = 64 * 1024 * 1024
    max_message_bytes = 64 * 1024 * 1024

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise InvalidTarget(f"cannot write {path}: {exc.strerror}") from exc

    @property
    def description(self) -> str:
        return f"file://{self.path.resolve()}"

    def _send(self, batch: Sequence[TargetMessage]) -> list[EntryFailure]:
        try:
            self._file.write("".join(m.body + "\n" for m in batch))
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise InvalidTarget(f"cannot write {self.path}: {exc.strerror}") from exc
        return []

    def close(self) -> None:
        self._file.close()


# -- memory (tests) -------------------------------------------------------------------------------
class MemoryTarget(ReplayTarget):
    """Keeps what it is sent. Fault injection for tests:

    * ``crash_after_batches=N`` raises ``TargetCrash`` on the batch after N accepted ones
      (a process killed mid-replay: that batch is not sent);
    * ``fail_once`` keys fail (retryably) on their first attempt only;
    * ``always_fail`` keys fail every time (not retryable);
    * ``on_batch`` is called after each accepted batch (e.g. to cancel the job from "outside").
    """

    kind = "memory"

    def __init__(
        self,
        *,
        max_batch: int = SQS_MAX_BATCH_MESSAGES,
        fifo: bool = False,
        crash_after_batches: int | None = None,
        fail_once: Sequence[str] = (),
        always_fail: Sequence[str] = (),
        on_batch: Callable[[int], None] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("sleep", lambda _: None)
        super().__init__(**kwargs)
        self.max_batch_messages = max_batch
        self.fifo = fifo
        self.messages: list[dict[str, Any]] = []
        self.sent: list[TargetMessage] = []
        self.calls = 0
        self.batches_accepted = 0
        self._crash_after = crash_after_batches
        self._fail_once = set(fail_once)
        self._always_fail = set(always_fail)
        self._on_batch = on_batch
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return "memory://"

    def _send(self, batch: Sequence[TargetMessage]) -> list[EntryFailure]:
        with self._lock:
            self.calls += 1
            if self._crash_after is not None and self.batches_accepted >= self._crash_after:
                raise TargetCrash(f"simulated crash after {self.batches_accepted} batches")
            failures: list[EntryFailure] = []
            for i, message in enumerate(batch):
                if message.key in self._always_fail:
                    failures.append(EntryFailure(i, "InvalidMessage: refused", retryable=False))
                elif message.key in self._fail_once:
                    self._fail_once.discard(message.key)
                    failures.append(EntryFailure(i, "InternalError: try again", retryable=True))
                else:
                    self.sent.append(message)
                    self.messages.append(json.loads(message.body))
            self.batches_accepted += 1
            accepted = self.batches_accepted
        if self._on_batch is not None:
            self._on_batch(accepted)
        return failures


# -- resolving a target spec ----------------------------------------------------------------------
def _queue_url(sqs: Any, name: str) -> str:
    try:
        url: str = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return url
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _MISSING_QUEUE_CODES:
            raise InvalidTarget(f"queue {name} does not exist") from exc
        raise BackendError(f"SQS GetQueueUrl {name}: {code}", service="sqs", code=code) from exc
    except BotoCoreError as exc:
        raise BackendError(f"SQS GetQueueUrl {name}: {exc}", service="sqs") from exc


def _check_queue(sqs: Any, url: str) -> None:
    try:
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _MISSING_QUEUE_CODES:
            raise InvalidTarget(f"queue {url} does not exist") from exc
        raise BackendError(f"SQS GetQueueAttributes {url}: {code}", service="sqs") from exc
    except BotoCoreError as exc:
        raise BackendError(f"SQS GetQueueAttributes {url}: {exc}", service="sqs") from exc


def _check_stream(kinesis: Any, stream: str) -> None:
    arg = {"StreamARN": stream} if stream.startswith("arn:") else {"StreamName": stream}
    try:
        kinesis.describe_stream_summary(**arg)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise InvalidTarget(f"stream {stream} does not exist") from exc
        raise BackendError(f"Kinesis DescribeStreamSummary {stream}: {code}") from exc
    except BotoCoreError as exc:
        raise BackendError(f"Kinesis DescribeStreamSummary {stream}: {exc}") from exc


def check_target_spec(spec: str | None, *, allow_files: bool = True) -> str | None:
    """The spec, if its form is one ``open_target`` knows (no AWS call); InvalidTarget if not."""
    if spec is None or spec in ("", "default"):
        return None
    if spec.startswith("file:"):
        if not allow_files:
            raise InvalidTarget("file targets are only available from the command line")
        if not spec.removeprefix("file://").removeprefix("file:"):
            raise InvalidTarget("a file target needs a path: file:///path/out.ndjson")
        return spec
    if spec.startswith("sqs://") and len(spec) > len("sqs://"):
        return spec
    if spec.startswith("kinesis://") and len(spec) > len("kinesis://"):
        return spec
    if _KINESIS_ARN.match(spec) or _QUEUE_URL.match(spec):
        return spec
    raise InvalidTarget(
        f"unknown target {spec!r}: use an SQS queue URL, sqs://NAME, kinesis://STREAM, "
        "a Kinesis stream ARN, or file:///path.ndjson"
    )


def open_target(
    spec: str | None,
    *,
    sqs_client: Callable[[], Any],
    kinesis_client: Callable[[], Any],
    default_queue: str,
    allow_files: bool = True,
    check: bool = True,
) -> ReplayTarget:
    """A target for ``spec``: None/``default`` → the replay queue; ``https://…`` → an SQS queue
    URL (FIFO when it ends in ``.fifo``); ``sqs://NAME``; ``kinesis://STREAM`` or a stream ARN;
    ``file:///path.ndjson``. With ``check``, the queue or stream must exist (InvalidTarget)."""
    spec = check_target_spec(spec, allow_files=allow_files)
    if spec is None:
        return SqsTarget(sqs_client(), _queue_url(sqs_client(), default_queue))
    if spec.startswith("file:"):
        path = spec.removeprefix("file://") if spec.startswith("file://") else spec[5:]
        return NdjsonFileTarget(Path(path))
    if spec.startswith("sqs://"):
        return SqsTarget(sqs_client(), _queue_url(sqs_client(), spec.removeprefix("sqs://")))
    if spec.startswith("kinesis://") or spec.startswith("arn:"):
        stream = spec.removeprefix("kinesis://")  # an ARN stays whole (StreamARN)
        if check:
            _check_stream(kinesis_client(), stream)
        return KinesisTarget(kinesis_client(), stream)
    if check:
        _check_queue(sqs_client(), spec)
    return SqsTarget(sqs_client(), spec)
