"""The opt-in processor: deterministic, versioned aggregates from replayed events.

For every (entity, day) a batch of replay messages touches, the aggregate is recomputed from
*all* accepted events of that day in the index and the archive — not from the batch — so the
value is the same whatever order or grouping the messages came in. A new version is written only
when the input hash changes; each version keeps its inputs, its predecessor and the replay that
caused it, so "why did this number change?" is answered by diffing two versions.

A message that cannot be handled (not a replay message, its archived record is missing) is
reported as failed — it goes back to the queue and, after its receives, to the dead-letter
queue — while the rest of the batch succeeds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from infra.aggregates import Aggregates, AggregateVersion, VersionTaken
from infra.archive import ArchivePointer, ArchiveReader, RawArchive
from infra.clock import Clock
from infra.errors import KitError, NotFound
from infra.index import EventIndex, Selection
from infra.metrics import Metrics
from schemas.envelope import format_time, parse_time
from schemas.identity import canonical_json

log = logging.getLogger(__name__)

ALGORITHM_VERSION = "pik.aggregate.v1"
KINDS = ("count", "sum", "min", "max")
SAMPLE_SIZE = 5
MAX_VERSION_RACES = 10
WINDOW_ATTRIBUTES = (
    "event_id",
    "source",
    "event_type",
    "archive_bucket",
    "archive_key",
    "archive_position",
)
FILE_CACHE = 256  # decoded archive files kept (immutable, so never stale)


@dataclass(frozen=True, slots=True)
class AggregateDefinition:
    """One metric: ``count`` of events, or ``sum``/``min``/``max`` of a numeric payload field,
    optionally only for one source and/or event type."""

    name: str
    kind: str = "count"
    field: str | None = None
    source: str | None = None
    event_type: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"aggregate {self.name}: kind must be one of {', '.join(KINDS)}")
        if (self.kind == "count") != (self.field is None):
            raise ValueError(f"aggregate {self.name}: sum/min/max need a field, count takes none")

    def applies_to(self, item: dict[str, Any]) -> bool:
        return (self.source is None or item.get("source") == self.source) and (
            self.event_type is None or item.get("event_type") == self.event_type
        )

    def compute(self, payloads: Sequence[dict[str, Any]]) -> float | None:
        if self.kind == "count":
            return len(payloads)
        numbers = [
            p[self.field]
            for p in payloads
            if self.field in p
            and isinstance(p[self.field], int | float)
            and not isinstance(p[self.field], bool)
        ]
        if not numbers:
            return None
        if self.kind == "sum":
            if all(isinstance(n, int) for n in numbers):
                return sum(numbers)
            return math.fsum(numbers)
        return min(numbers) if self.kind == "min" else max(numbers)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in vars_of(self).items() if v is not None}


def vars_of(definition: AggregateDefinition) -> dict[str, Any]:
    return {name: getattr(definition, name) for name in AggregateDefinition.__slots__}


DEFAULT_DEFINITIONS = (AggregateDefinition("daily_event_count"),)


@dataclass(frozen=True, slots=True)
class ReplayMessage:
    message_id: str
    event_id: str
    entity_id: str
    day: str
    replay_id: str | None
    pointer: ArchivePointer


def parse_message(message_id: str, body: str) -> ReplayMessage:
    """A replay message body → ``ReplayMessage``; ValueError says what is wrong with it."""
    try:
        doc = json.loads(body)
        archive = doc["archive"]
        day = format_time(parse_time(str(doc["event_time"])))[:10]
        return ReplayMessage(
            message_id=message_id,
            event_id=str(doc["event_id"]),
            entity_id=str(doc["entity_id"]),
            day=day,
            replay_id=doc.get("replay_id"),
            pointer=ArchivePointer(
                str(archive["bucket"]), str(archive["key"]), int(archive["position"])
            ),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a replay message: {type(exc).__name__}: {exc}") from exc


@dataclass(slots=True)
class BatchOutcome:
    failed: dict[str, str] = field(default_factory=dict)  # message id → reason
    written: list[AggregateVersion] = field(default_factory=list)
    unchanged: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "failed": self.failed,
            "written": [v.to_json() for v in self.written],
            "unchanged": self.unchanged,
        }


def input_hash(definition: AggregateDefinition, event_ids: Iterable[str]) -> str:
    doc = [ALGORITHM_VERSION, definition.to_json(), sorted(event_ids)]
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()


class Processor:
    def __init__(
        self,
        index: EventIndex,
        archive: RawArchive,
        aggregates: Aggregates,
        clock: Clock,
        metrics: Metrics,
        *,
        definitions: Sequence[AggregateDefinition] = DEFAULT_DEFINITIONS,
        dry_run: bool = False,
    ) -> None:
        self._index = index
        self._archive = archive
        self._aggregates = aggregates
        self._clock = clock
        self._metrics = metrics
        self.definitions = tuple(definitions)
        self.dry_run = dry_run
        # Archive files are immutable, so decoded files stay valid across batches.
        self._reader = ArchiveReader(archive, cached_files=FILE_CACHE)

    def process(self, messages: Sequence[tuple[str, str]]) -> BatchOutcome:
        """Handle one batch of (message id, body); failures are reported per message."""
        outcome = BatchOutcome()
        reader = self._reader
        windows: dict[tuple[str, str], list[ReplayMessage]] = defaultdict(list)
        self._metrics.incr("ProcessorMessageCount", len(messages))
        for message_id, body in messages:
            try:
                message = parse_message(message_id, body)
                record = reader.read(message.pointer)
                if record.event_id != message.event_id:
                    raise ValueError(f"archive record at {message.pointer.key} is another event")
            except (ValueError, NotFound) as exc:
                self._fail(outcome, message_id, str(exc))
                continue
            windows[(message.entity_id, message.day)].append(message)
        for (entity_id, day), members in sorted(windows.items()):
            try:
                self._recompute(entity_id, day, members, reader, outcome)
            except (KitError, ValueError) as exc:
                for m in members:
                    self._fail(outcome, m.message_id, f"window {entity_id} {day}: {exc}")
        return outcome

    def _fail(self, outcome: BatchOutcome, message_id: str, reason: str) -> None:
        outcome.failed[message_id] = reason
        self._metrics.incr("ProcessorErrorCount")
        log.error("replay message failed", extra={"message_id": message_id, "reason": reason})

    def _recompute(
        self,
        entity_id: str,
        day: str,
        messages: list[ReplayMessage],
        reader: ArchiveReader,
        outcome: BatchOutcome,
    ) -> None:
        items = self._window(entity_id, day)
        replay_ids = sorted({m.replay_id for m in messages if m.replay_id})
        cause = replay_ids[0] if replay_ids else None
        payloads: dict[str, dict[str, Any]] = {}

        def values_of(chosen: list[str]) -> list[dict[str, Any]]:
            # The archive is read only for a window whose input hash changed.
            if not payloads:
                payloads.update(self._payloads(items, reader))
            return [payloads[e] for e in chosen]

        for definition in self.definitions:
            for _ in range(MAX_VERSION_RACES):
                chosen = sorted(i["event_id"] for i in items if definition.applies_to(i))

                def value(d: AggregateDefinition = definition, c: list[str] = chosen) -> Any:
                    return d.compute(values_of(c))

                if self._write(entity_id, day, definition, chosen, value, cause, outcome):
                    break
                # Another processor took the version number between our read and our write: its
                # inputs may be newer or older than ours, so read the window again and write
                # only if that differs from what it wrote (never our old inputs as the next one).
                items = self._window(entity_id, day)
                payloads.clear()
            else:
                raise KitError(
                    f"aggregate {entity_id} {day} {definition.name}: too many racing writers"
                )

    def _window(self, entity_id: str, day: str) -> list[dict[str, Any]]:
        """All accepted events of (entity, day), as the index has them."""
        start = parse_time(f"{day}T00:00:00Z")
        selection = Selection(start=start, end=start + timedelta(days=1), entity_id=entity_id)
        pages = self._index.select(selection, page_size=1000, attributes=WINDOW_ATTRIBUTES)
        return [item for page in pages for item in page.items]

    def _payloads(
        self, items: list[dict[str, Any]], reader: ArchiveReader
    ) -> dict[str, dict[str, Any]]:
        """The archived payloads of ``items``: one S3 read per archive file (the reader keeps
        decoded files)."""
        payloads: dict[str, dict[str, Any]] = {}
        for item in items:
            pointer = ArchivePointer(
                item["archive_bucket"], item["archive_key"], int(item["archive_position"])
            )
            record = reader.read(pointer)
            payloads[item["event_id"]] = json.loads(record.payload or "{}")
        return payloads

    def _write(
        self,
        entity_id: str,
        day: str,
        definition: AggregateDefinition,
        event_ids: list[str],
        value: Callable[[], float | None],
        cause: str | None,
        outcome: BatchOutcome,
    ) -> bool:
        """Write the next version unless the latest has these inputs; False if another writer
        took that version number first (the caller recomputes the window and tries again)."""
        digest = input_hash(definition, event_ids)
        latest = self._aggregates.latest(entity_id, day, definition.name)
        if latest is not None and latest.input_hash == digest:
            outcome.unchanged += 1
            self._metrics.incr("AggregateVersionsUnchanged")
            return True
        version = AggregateVersion(
            entity_id=entity_id,
            day=day,
            metric=definition.name,
            version=(latest.version + 1) if latest else 1,
            value=value(),
            input_hash=digest,
            input_count=len(event_ids),
            sample_event_ids=event_ids[:SAMPLE_SIZE],
            computed_at=format_time(self._clock.now()),
            definition=definition.to_json(),
            replay_id=cause,
            previous_version=latest.version if latest else None,
            previous_value=latest.value if latest else None,
            input_event_ids=event_ids,
        )
        if self.dry_run:
            outcome.written.append(version)
            log.info("dry run: would write aggregate version", extra=version.to_json())
            return True
        try:
            self._aggregates.put(version)
        except VersionTaken:  # another processor wrote this version number first
            self._metrics.incr("AggregateVersionRaces")
            return False
        outcome.written.append(version)
        self._metrics.incr("AggregateVersionsWritten")
        return True


@dataclass(frozen=True, slots=True)
class VersionDiff:
    entity_id: str
    day: str
    metric: str
    from_version: int
    to_version: int
    from_value: float | None
    to_value: float | None
    added: list[str]
    removed: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "entity_id": self.entity_id,
            "day": self.day,
            "metric": self.metric,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "from_value": self.from_value,
            "to_value": self.to_value,
            "value_change": (
                self.to_value - self.from_value
                if self.to_value is not None and self.from_value is not None
                else None
            ),
            "added_event_ids": self.added,
            "removed_event_ids": self.removed,
        }


def diff_versions(
    aggregates: Aggregates, older: AggregateVersion, newer: AggregateVersion
) -> VersionDiff:
    """Which events entered and left an aggregate between two versions, and the value change."""
    before, after = set(aggregates.inputs(older)), set(aggregates.inputs(newer))
    return VersionDiff(
        entity_id=newer.entity_id,
        day=newer.day,
        metric=newer.metric,
        from_version=older.version,
        to_version=newer.version,
        from_value=older.value,
        to_value=newer.value,
        added=sorted(after - before),
        removed=sorted(before - after),
    )
