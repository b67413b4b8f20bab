"""Claims and occurrences outside transactions: PartiQL ``INSERT``s at 1x, counted exactly by a
write-ahead note.

A claim is a conditional put of an identity item. ``TransactWriteItems`` bills each item twice;
``BatchExecuteStatement`` runs 25 ``INSERT``s a request at 1x, each failing alone with
``DuplicateItem`` when its key exists (``infra.partiql``). What a transaction gave for free is
that the rollups (``infra.rollups``) and the time bundles (``infra.bundles``) of the claims
were written with them, all or nothing. Without it they are written after the claims, per
archive file, by this protocol:

1. **pending note** (``pending#<shard>``, one small item per call, naming its archive files, a
   plain put): those files' claims may be in the table without their counts;
2. **claims and occurrences**: the ``INSERT``s of identity items and of duplicate and rejected
   deliveries' occurrence items. A claim whose key exists was written by this same file when
   the holder points at this file and is this delivery (an earlier run of the batch that
   stopped, or a concurrent sweep): it counts as the file's own; so does an occurrence item
   that points at this file. The duplicates' ids go into their identities'
   ``dup_occurrences`` (``set_add``, idempotent);
3. **bundles**: the time bundles of the file's own claims, plain puts (1x). Their keys are
   fixed by the claims and by the note (which pairs spread over shards), so a redo writes the
   very same items again;
4. **settle**: per part of up to ~95 updates, a *counted mark* for the file (``counted#``,
   a conditional put: ``attribute_not_exists``) and the rollup ``ADD``s of the file's own
   claims and occurrences. A mark that exists means it was counted: nothing is added twice;
5. once every file is settled, the pending note is deleted.

A writer that stops between 1 and 5 leaves its note. Every writer sweeps, once a minute, the
notes older than ``PENDING_LEASE_S`` and *redoes* their files: it reads the file from the
archive (the one truth; the note is written only once the file is durable), inserts every
claim and occurrence it holds (so none of that file's items can appear after the count), counts
the file's own and settles it. A redo that races the file's live writer is harmless: both
insert the same items, both count the same set (all the file's items exist before either
counts), and the counted mark lets one of them add it. So the rollups are exact under
retries, re-runs and crashes, and a claim or an occurrence costs 1 WRU (under 1 KB) instead
of 2.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import random
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infra.dynamo import batch_write, dynamo_errors, paginate
from infra.errors import BackendError, Throttled, TransactionCanceled
from infra.partiql import (
    CONDITION_FAILED,
    DUPLICATE_ITEM,
    MAX_BATCH_STATEMENTS,
    insert_statement,
    set_add_statement,
)

__all__ = [
    "COUNTED_PREFIX",
    "PENDING_LEASE_S",
    "PENDING_PREFIX",
    "PENDING_SHARDS",
    "ArchiveFile",
    "ClaimLog",
    "counted_key",
    "file_token",
    "note_key",
]

log = logging.getLogger(__name__)

PENDING_PREFIX = "pending#"
PENDING_SHARDS = 4  # note partitions: 10,000 events/s in 500-record batches is 10 WCU/s on each
COUNTED_PREFIX = "counted#"
PENDING_LEASE_S = 120.0  # a note older than this is its writer's to finish no longer
SWEEP_INTERVAL_S = 60.0  # how often a writer looks for such notes
SETTLE_MAX_OPS = 95  # updates beside the counted mark in one transaction (AWS allows 100)
TRANSACTION_MAX_ITEMS = 100  # AWS's limit for one TransactWriteItems
MAX_RETRIES = 8
VALIDATION_ERROR = "ValidationError"
_FATAL = frozenset({VALIDATION_ERROR, "ResourceNotFound", "AccessDenied"})

ArchiveFile = tuple[str, str]  # (bucket, key)


def file_token(file: ArchiveFile) -> str:
    return hashlib.sha256("\n".join(file).encode()).hexdigest()[:32]


def note_key(files: Iterable[ArchiveFile]) -> dict[str, str]:
    """The key of the pending note of one call's archive files (the same files, the same key)."""
    token = hashlib.sha256(" ".join(sorted(file_token(f) for f in files)).encode()).hexdigest()
    return {
        "event_id": f"{PENDING_PREFIX}{int(token[:8], 16) % PENDING_SHARDS}",
        "item": token[:32],
    }


def counted_key(file: ArchiveFile, part: int) -> dict[str, str]:
    return {"event_id": COUNTED_PREFIX + file_token(file), "item": str(part)}


def _backoff(attempt: int) -> None:
    time.sleep(min(1.0, 0.02 * 2**attempt) * random.random())


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True, slots=True)
class Pending:
    """A pending note: the archive files one call was writing, with, per file, the pairs whose
    time bundles it spreads over shards."""

    written_at: float  # epoch seconds
    spread: Mapping[ArchiveFile, tuple[tuple[str, str], ...]]  # every file the note names
    key: Mapping[str, str]  # the note's own table key (``forget`` deletes it)

    @property
    def files(self) -> tuple[ArchiveFile, ...]:
        return tuple(sorted(self.spread))


def _encode_files(files: Mapping[ArchiveFile, Sequence[tuple[str, str]]]) -> bytes:
    rows = [[b, k, [list(p) for p in spread]] for (b, k), spread in sorted(files.items())]
    return zlib.compress(json.dumps(rows, separators=(",", ":")).encode(), 6)


def _note_files(raw: Mapping[str, Any]) -> dict[ArchiveFile, tuple[tuple[str, str], ...]]:
    """A note's files and spread pairs; a note of the previous layout names one file."""
    if "files" in raw:
        return _decode_files(raw["files"]["B"])
    pairs = tuple(
        (str(p["L"][0]["S"]), str(p["L"][1]["S"])) for p in raw.get("spread", {}).get("L", [])
    )
    return {(str(raw["bucket"]["S"]), str(raw["key"]["S"])): pairs}


def _decode_files(raw: Any) -> dict[ArchiveFile, tuple[tuple[str, str], ...]]:
    body = raw.value if hasattr(raw, "value") else raw
    rows = json.loads(zlib.decompress(base64.b64decode(body) if isinstance(body, str) else body))
    return {(str(b), str(k)): tuple((str(s), str(t)) for s, t in spread) for b, k, spread in rows}


class ClaimLog:
    """The requests of the protocol above, on one table (serialised ``AttributeValue``s in and
    out: the index turns them into items)."""

    def __init__(
        self, dynamodb_client: Any, table: str, *, wall: Callable[[], float] = time.time
    ) -> None:
        self._ddb = dynamodb_client
        self.table = table
        self._wall = wall

    # -- 1 and 4: the pending notes ------------------------------------------------------
    def note(self, files: Mapping[ArchiveFile, Sequence[tuple[str, str]]]) -> None:
        """One note for the call's files (the keys compressed: files of one batch share most
        of their names), with, per file, the (source, type) pairs whose time bundles it spreads
        over shards: whoever finishes a file writes the same bundle keys."""
        item = {
            **{k: {"S": v} for k, v in note_key(files).items()},
            "at": {"N": str(int(self._wall()))},
            "files": {"B": _encode_files(files)},
        }
        batch_write(self._ddb, self.table, [{"PutRequest": {"Item": item}}])

    def done(self, files: Iterable[ArchiveFile]) -> None:
        key = {k: {"S": v} for k, v in note_key(set(files)).items()}
        batch_write(self._ddb, self.table, [{"DeleteRequest": {"Key": key}}])

    def stale(self, older_than: float) -> list[Pending]:
        """The notes written more than ``older_than`` seconds ago, oldest first."""
        limit = self._wall() - older_than
        found = []
        for shard in range(PENDING_SHARDS):
            for page in paginate(
                self._ddb,
                "Query",
                self.table,
                KeyConditionExpression="event_id = :p",
                ExpressionAttributeValues={":p": {"S": f"{PENDING_PREFIX}{shard}"}},
            ):
                for raw in page.get("Items", []):
                    at = float(raw["at"]["N"])
                    if at <= limit:
                        spread = _note_files(raw)
                        key = {"event_id": raw["event_id"]["S"], "item": raw["item"]["S"]}
                        found.append(Pending(at, spread, key))
        return sorted(found, key=lambda p: (p.written_at, p.files))

    def forget(self, key: Mapping[str, str]) -> None:
        """Delete one note by its key (a swept one: its files are finished)."""
        request = {"DeleteRequest": {"Key": {k: {"S": v} for k, v in key.items()}}}
        batch_write(self._ddb, self.table, [request])

    # -- 2: the claims and occurrences -----------------------------------------------------
    def insert(self, items: Sequence[Mapping[str, Any]]) -> set[int]:
        """``INSERT`` every item (25 a request); the positions of those whose key exists.
        Throttled or failed statements are sent again, with backoff."""
        statements = [insert_statement(self.table, item) for item in items]
        return set(self._run(statements, {DUPLICATE_ITEM}))

    def add_to_sets(self, attribute: str, adds: Mapping[tuple[str, str], Sequence[str]]) -> None:
        """Add strings to the set ``attribute`` of each item (``(event_id, item)``: values),
        25 ``set_add`` updates a request; an item that is not there is left alone. Should
        DynamoDB refuse ``set_add`` where the set does not exist yet, that item's strings go
        in an ``UpdateItem`` ``ADD`` instead."""
        keys = sorted(adds)
        statements = [
            set_add_statement(
                self.table,
                {"event_id": {"S": k[0]}, "item": {"S": k[1]}},
                attribute,
                {"SS": sorted(set(adds[k]))},
            )
            for k in keys
        ]
        try:
            failed = self._run(statements, {CONDITION_FAILED, VALIDATION_ERROR})
        except BackendError as exc:  # the whole request refused: this DynamoDB has no set_add
            if exc.code not in ("ValidationException", VALIDATION_ERROR):
                raise
            log.warning("set_add refused: UpdateItem instead", extra={"error": str(exc)})
            failed = dict.fromkeys(range(len(keys)), VALIDATION_ERROR)
        for i, code in sorted(failed.items()):
            if code != VALIDATION_ERROR:
                continue
            missing = self._ddb.exceptions.ConditionalCheckFailedException
            with dynamo_errors(self.table, "UpdateItem"), contextlib.suppress(missing):
                self._ddb.update_item(
                    TableName=self.table,
                    Key={"event_id": {"S": keys[i][0]}, "item": {"S": keys[i][1]}},
                    UpdateExpression="ADD #a :v",
                    ConditionExpression="attribute_exists(event_id)",
                    ExpressionAttributeNames={"#a": attribute},
                    ExpressionAttributeValues={":v": {"SS": sorted(set(adds[keys[i]]))}},
                )

    def _run(self, statements: Sequence[dict[str, Any]], expected: set[str]) -> dict[int, str]:
        """Run ``statements`` (25 a request) until each succeeds or fails with an ``expected``
        code; {position: code} of those that did."""
        taken: dict[int, str] = {}
        todo = list(range(len(statements)))
        attempt = 0
        while todo:
            again: list[int] = []
            for chunk in _chunks(todo, MAX_BATCH_STATEMENTS):
                try:
                    with dynamo_errors(self.table, "BatchExecuteStatement"):
                        out = self._ddb.batch_execute_statement(
                            Statements=[statements[i] for i in chunk]
                        )
                except Throttled:
                    again += chunk
                    continue
                for i, response in zip(chunk, out["Responses"], strict=True):
                    error = response.get("Error")
                    if not error:
                        continue
                    code = str(error.get("Code", ""))
                    if code in expected:
                        taken[i] = code
                    elif code in _FATAL:
                        raise BackendError(
                            f"DynamoDB BatchExecuteStatement on {self.table}: {code}",
                            service="dynamodb",
                            code=code,
                            detail=str(error.get("Message", "")),
                        )
                    else:  # throttling, a conflict with a transaction, an internal error
                        again.append(i)
            todo = again
            if todo:
                attempt += 1
                if attempt > MAX_RETRIES:
                    raise Throttled(
                        f"DynamoDB BatchExecuteStatement on {self.table}: {len(todo)} "
                        f"statements still failing after {MAX_RETRIES} retries",
                        service="dynamodb",
                        code="ThrottlingError",
                    )
                _backoff(attempt)
        return taken

    # -- 3: settle -----------------------------------------------------------------------
    def settle(self, files: Mapping[ArchiveFile, Sequence[Sequence[dict[str, Any]]]]) -> int:
        """Write each file's ``pieces`` (lists of transaction ops that belong together: one
        rollup hour's updates) in parts of up to ``SETTLE_MAX_OPS`` ops, each with its counted
        mark. The parts are the same whoever settles (``pieces`` in a fixed order), so a part
        counted by another writer is recognised by its mark. Parts of several files share a
        transaction while they fit (100 items, no item twice): a batch's files settle in one or
        two requests, not one each. Returns the parts written."""
        parts: list[tuple[ArchiveFile, int, list[dict[str, Any]]]] = []
        for file, pieces in sorted(files.items()):
            ops: list[dict[str, Any]] = []
            n = 0
            for piece in pieces:
                if ops and len(ops) + len(piece) > SETTLE_MAX_OPS:
                    parts.append((file, n, ops))
                    ops, n = [], n + 1
                ops.extend(piece)
            if ops:
                parts.append((file, n, ops))
        written = 0
        for group in _transactions(parts):
            written += self._parts(group)
        return written

    def _mark(self, file: ArchiveFile, n: int) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.table,
                "Item": {
                    **{k: {"S": v} for k, v in counted_key(file, n).items()},
                    "key": {"S": file[1]},
                },
                "ConditionExpression": "attribute_not_exists(event_id)",
            }
        }

    def _parts(self, group: list[tuple[ArchiveFile, int, list[dict[str, Any]]]]) -> int:
        """One transaction of ``group``'s parts; a part whose mark exists is counted already
        (a re-run, a sweep, or the other racer): the rest is sent again without it."""
        attempt = 0
        while group:
            items: list[dict[str, Any]] = []
            marks: list[int] = []  # each part's mark's place in the transaction
            for file, n, ops in group:
                marks.append(len(items))
                items += [self._mark(file, n), *ops]
            try:
                with dynamo_errors(self.table, "TransactWriteItems"):
                    self._ddb.transact_write_items(TransactItems=items)
                return len(group)
            except TransactionCanceled as exc:
                codes = [str(r.get("Code", "None")) for r in exc.reasons]
                counted = {
                    i
                    for i, at in enumerate(marks)
                    if at < len(codes) and codes[at] == "ConditionalCheckFailed"
                }
                if counted:
                    group = [part for i, part in enumerate(group) if i not in counted]
                    continue
            except Throttled:
                pass
            attempt += 1
            if attempt > MAX_RETRIES:
                raise Throttled(
                    f"DynamoDB TransactWriteItems on {self.table}: settling "
                    f"{', '.join(sorted({f[1] for f, _, _ in group}))} still conflicting or "
                    f"throttled after {MAX_RETRIES} retries",
                    service="dynamodb",
                    code="TransactionConflict",
                )
            _backoff(attempt)
        return 0


def _transactions(
    parts: Sequence[tuple[ArchiveFile, int, list[dict[str, Any]]]],
) -> Iterator[list[tuple[ArchiveFile, int, list[dict[str, Any]]]]]:
    """``parts`` grouped into transactions of at most ``TRANSACTION_MAX_ITEMS`` items in which
    no item is written twice (two files of one batch may update one rollup item)."""
    group: list[tuple[ArchiveFile, int, list[dict[str, Any]]]] = []
    size = 0
    keys: set[str] = set()
    for part in parts:
        mine = {json.dumps(op["Update"]["Key"], sort_keys=True) for op in part[2] if "Update" in op}
        if group and (size + 1 + len(part[2]) > TRANSACTION_MAX_ITEMS or keys & mine):
            yield group
            group, size, keys = [], 0, set()
        group.append(part)
        size += 1 + len(part[2])
        keys |= mine
    if group:
        yield group
