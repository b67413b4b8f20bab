"""The sent log of replays (``ReplayLog``): which events each replay re-emitted, and when.

A replay appends one object per checkpoint (every ~1,000 messages), before the checkpoint moves
its cursor, so every message at or before a recorded cursor is in the log. Objects live in the
archive bucket under ``replays/<replay id>/sent/<sequence>-<runner>.ndjson``, one JSON line per
message (``key``, ``event_id``, ``occurrence_id``, ``status``, ``sent_at``), written with
``If-None-Match: *``: a retried write of the same block is a no-op. A message that was sent
again after a crash (before its checkpoint) appears twice, once per runner, which is the truth.

``explain`` reads it back (``sent``): a few requests per replay searched, one List per 1,000
blocks and one Get per block until the event is found. Cost on the sending side: one PUT per
checkpoint, about one request per 1,000 messages.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from infra.aws_errors import map_aws_errors
from infra.errors import ConditionFailed
from infra.keys import escape_segment

__all__ = [
    "LOG_PREFIX",
    "MAX_BLOCKS_READ",
    "MemoryReplayLog",
    "ReplayLog",
    "S3ReplayLog",
    "SentEntry",
    "block_key",
]

LOG_PREFIX = "replays"
MAX_BLOCKS_READ = 1_000  # per replay and lookup: a million messages at 1,000 per block

SentEntry = Mapping[str, Any]


def _prefix(replay_id: str) -> str:
    return f"{LOG_PREFIX}/{escape_segment(replay_id)}/sent/"


def block_key(replay_id: str, sequence: int, runner: str) -> str:
    """Where the block starting at the job's ``sequence``-th sent message is written."""
    return f"{_prefix(replay_id)}{sequence:010d}-{escape_segment(runner[:12])}.ndjson"


def encode_block(entries: Sequence[SentEntry]) -> bytes:
    return b"".join(
        json.dumps(dict(e), separators=(",", ":"), sort_keys=True).encode() + b"\n" for e in entries
    )


def _matching(body: bytes, event_id: str) -> list[dict[str, Any]]:
    if event_id.encode() not in body:  # cheap test before parsing a block
        return []
    out = []
    for line in body.splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        if entry.get("event_id") == event_id:
            out.append(entry)
    return out


class ReplayLog(Protocol):
    def append(
        self, replay_id: str, sequence: int, runner: str, entries: Sequence[SentEntry]
    ) -> None:
        """Record one block of sent messages (idempotent for the same arguments)."""
        ...

    def sent(self, replay_id: str, event_id: str) -> tuple[list[dict[str, Any]], bool]:
        """The entries of ``event_id`` in the replay's log, and whether the whole log was read
        (False when the replay wrote more than ``MAX_BLOCKS_READ`` blocks)."""
        ...


class S3ReplayLog:
    def __init__(self, s3_client: Any, bucket: str) -> None:
        self._s3 = s3_client
        self.bucket = bucket

    def _errors(self, operation: str) -> AbstractContextManager[None]:
        return map_aws_errors("s3", f"s3://{self.bucket}/{LOG_PREFIX}/", operation)

    def append(
        self, replay_id: str, sequence: int, runner: str, entries: Sequence[SentEntry]
    ) -> None:
        if not entries:
            return
        key = block_key(replay_id, sequence, runner)
        try:
            with self._errors("PutObject"):
                self._s3.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=encode_block(entries),
                    IfNoneMatch="*",
                    ContentType="application/x-ndjson",
                )
        except ConditionFailed:
            return  # this block was written by an earlier attempt of the same call

    def _keys(self, replay_id: str) -> Iterator[str]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": _prefix(replay_id)}
        while True:
            with self._errors("ListObjectsV2"):
                out = self._s3.list_objects_v2(**kwargs)
            for obj in out.get("Contents", []):
                yield str(obj["Key"])
            if not out.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = out["NextContinuationToken"]

    def sent(self, replay_id: str, event_id: str) -> tuple[list[dict[str, Any]], bool]:
        found: list[dict[str, Any]] = []
        for n, key in enumerate(self._keys(replay_id)):
            if n >= MAX_BLOCKS_READ:
                return found, False
            with self._errors("GetObject"):
                body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            found += _matching(body, event_id)
        return found, True


class MemoryReplayLog:
    """The same log in memory, for unit tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.blocks: dict[str, bytes] = {}

    def append(
        self, replay_id: str, sequence: int, runner: str, entries: Sequence[SentEntry]
    ) -> None:
        if entries:
            with self._lock:
                self.blocks.setdefault(
                    block_key(replay_id, sequence, runner), encode_block(entries)
                )

    def sent(self, replay_id: str, event_id: str) -> tuple[list[dict[str, Any]], bool]:
        prefix = _prefix(replay_id)
        with self._lock:
            bodies = [b for k, b in sorted(self.blocks.items()) if k.startswith(prefix)]
        found: list[dict[str, Any]] = []
        for body in bodies[:MAX_BLOCKS_READ]:
            found += _matching(body, event_id)
        return found, len(bodies) <= MAX_BLOCKS_READ
