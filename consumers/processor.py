"""The opt-in processor: deterministic, versioned aggregates from replayed events.

For every (entity, day) replay messages touch, the aggregate is computed from *all* accepted
events of that day in the index and the archive — not from the batch — so the value is the same
whatever order or grouping the messages came in. A new version is written only when the input
hash changes; each version keeps its inputs, its predecessor and the replay that caused it, so
"why did this number change?" is answered by diffing two versions.

Work is coalesced per window, not repeated per message: the messages of a batch are grouped by
window, and a window is read whole from the index once per replay (``processor_windows``). A
later message of that replay whose event is already an input costs nothing; one naming an event
indexed since costs one GetItem. The payloads a metric needs are read from the archive only when
its input hash changed. So the reads per message do not grow with the window's size.

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

from consumers.processor_windows import WindowCache, WindowEvent, WindowKey, WindowState
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
# A window's Query asks for this many items a page: DynamoDB ends a page at 1 MB read (before
# the projection) anyway, so a busy entity-day takes as few round trips as it can.
WINDOW_PAGE_ITEMS = 10_000
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
        return self.matches(item.get("source"), item.get("event_type"))

    def matches(self, source: str | None, event_type: str | None) -> bool:
        return (self.source is None or source == self.source) and (
            self.event_type is None or event_type == self.event_type
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
    released: list[str] = field(default_factory=list)  # not handled: the processor was stopped
    windows_recomputed: int = 0  # windows whose input hashes were computed again
    window_reads: int = 0  # full reads of a window from the index

    def to_json(self) -> dict[str, Any]:
        return {
            "failed": self.failed,
            "written": [v.to_json() for v in self.written],
            "unchanged": self.unchanged,
        }


class _Stopped(KitError):
    """The processor was asked to stop in the middle of a window (its messages are released);
    never escapes ``Processor.process``."""


def input_hash(definition: AggregateDefinition, event_ids: Iterable[str]) -> str:
    doc = [ALGORITHM_VERSION, definition.to_json(), sorted(event_ids)]
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()


def _never() -> bool:
    return False


class Processor:
    """Recomputes the windows replay messages touch; remembers them (``WindowCache``) so that
    later messages of the same replay for a window cost no window read."""

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
        windows: WindowCache | None = None,
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
        self._windows = windows if windows is not None else WindowCache()
        # Only sum/min/max read payloads, and only these fields of them.
        self._fields = sorted({d.field for d in self.definitions if d.field is not None})

    def process(
        self, messages: Sequence[tuple[str, str]], *, should_stop: Callable[[], bool] = _never
    ) -> BatchOutcome:
        """Handle one batch of (message id, body); failures are reported per message. Once
        ``should_stop()`` is true, the messages not yet handled are ``released``."""
        outcome = BatchOutcome()
        windows: dict[WindowKey, list[ReplayMessage]] = defaultdict(list)
        self._metrics.incr("ProcessorMessageCount", len(messages))
        for n, (message_id, body) in enumerate(messages):
            if should_stop():
                outcome.released.extend(mid for mid, _ in messages[n:])
                break
            try:
                message = parse_message(message_id, body)
                record = self._reader.read(message.pointer)
                if record.event_id != message.event_id:
                    raise ValueError(f"archive record at {message.pointer.key} is another event")
            except (ValueError, NotFound) as exc:
                self._fail(outcome, message_id, str(exc))
                continue
            windows[(message.entity_id, message.day)].append(message)
        for key, members in sorted(windows.items()):
            if should_stop():
                outcome.released.extend(m.message_id for m in members)
                continue
            try:
                self._handle(key, members, outcome, should_stop)
            except _Stopped:
                self._windows.drop(key)
                outcome.released.extend(m.message_id for m in members)
            except (KitError, ValueError) as exc:
                self._windows.drop(key)  # read again from scratch next time
                for m in members:
                    self._fail(outcome, m.message_id, f"window {key[0]} {key[1]}: {exc}")
        return outcome

    def _fail(self, outcome: BatchOutcome, message_id: str, reason: str) -> None:
        outcome.failed[message_id] = reason
        self._metrics.incr("ProcessorErrorCount")
        log.error("replay message failed", extra={"message_id": message_id, "reason": reason})

    def _handle(
        self,
        key: WindowKey,
        messages: list[ReplayMessage],
        outcome: BatchOutcome,
        should_stop: Callable[[], bool],
    ) -> None:
        replays = {m.replay_id for m in messages}
        state = self._windows.get(key)
        if state is None or not replays <= state.replays:
            # The window's first message of this replay: read it whole from the index.
            known = state.replays if state is not None else set()
            state = self._read(key, replays | known, state, should_stop, outcome)
            changed = True
        else:
            changed = self._add_named(key, state, messages)
        self._windows.put(key, state)
        if not changed:  # every event named is already an input (or known not to be one)
            outcome.unchanged += len(self.definitions)
            self._metrics.incr("AggregateVersionsUnchanged", len(self.definitions))
            return
        outcome.windows_recomputed += 1
        ids = sorted(r for r in replays if r)
        cause = ids[0] if ids else None
        for definition in self.definitions:
            self._settle(key, state, definition, cause, outcome, should_stop)

    def _read(
        self,
        key: WindowKey,
        replays: set[str | None],
        before: WindowState | None,
        should_stop: Callable[[], bool],
        outcome: BatchOutcome,
    ) -> WindowState:
        """The window as the index has it now, with each metric's latest version."""
        events = self._window(key, should_stop)
        outcome.window_reads += 1
        latest = {d.name: self._aggregates.latest(key[0], key[1], d.name) for d in self.definitions}
        fields = {} if before is None else before.fields  # payloads never change
        return WindowState(replays, events, latest, fields=fields)

    def _add_named(self, key: WindowKey, state: WindowState, messages: list[ReplayMessage]) -> bool:
        """Add the events messages name that the window state lacks (indexed since it was read):
        one GetItem each, never a window read. True if any became an input."""
        named = {m.event_id for m in messages}
        unknown = sorted(e for e in named if e not in state.events and e not in state.outside)
        added = False
        for event_id in unknown:
            item = self._index.get(event_id)
            if item is not None and _in_window(item, key):
                state.events[event_id] = WindowEvent.from_item(item)
                added = True
            else:  # rejected, or another window's: not an input here
                state.outside.add(event_id)
        return added

    def _window(self, key: WindowKey, should_stop: Callable[[], bool]) -> dict[str, WindowEvent]:
        """All accepted events of (entity, day), as the index has them."""
        start = parse_time(f"{key[1]}T00:00:00Z")
        selection = Selection(start=start, end=start + timedelta(days=1), entity_id=key[0])
        events: dict[str, WindowEvent] = {}
        for page in self._index.select(
            selection, page_size=WINDOW_PAGE_ITEMS, attributes=WINDOW_ATTRIBUTES
        ):
            if should_stop():
                raise _Stopped
            for item in page.items:
                events[str(item["event_id"])] = WindowEvent.from_item(item)
        return events

    def _settle(
        self,
        key: WindowKey,
        state: WindowState,
        definition: AggregateDefinition,
        cause: str | None,
        outcome: BatchOutcome,
        should_stop: Callable[[], bool],
    ) -> None:
        """Write the metric's next version unless its latest has these inputs."""
        for _ in range(MAX_VERSION_RACES):
            chosen = sorted(
                e for e, ev in state.events.items() if definition.matches(ev.source, ev.event_type)
            )
            digest = input_hash(definition, chosen)
            latest = state.latest.get(definition.name)
            if latest is not None and latest.input_hash == digest:
                outcome.unchanged += 1
                self._metrics.incr("AggregateVersionsUnchanged")
                return
            # The archive is read only for a window whose input hash changed.
            value = definition.compute(self._payloads(state, chosen, should_stop))
            version = self._version(key, definition, chosen, digest, value, cause, latest)
            if self.dry_run:
                log.info("dry run: would write aggregate version", extra=version.to_json())
            else:
                try:
                    self._aggregates.put(version)
                except VersionTaken:  # another processor wrote this version number first
                    # Its inputs may be newer or older than ours: read the window again and
                    # write only if that differs from what it wrote (never our old inputs).
                    self._metrics.incr("AggregateVersionRaces")
                    state.events = self._window(key, should_stop)
                    outcome.window_reads += 1
                    state.latest[definition.name] = self._aggregates.latest(
                        key[0], key[1], definition.name
                    )
                    continue
                self._metrics.incr("AggregateVersionsWritten")
            outcome.written.append(version)
            state.latest[definition.name] = version  # a dry run counts each change once too
            return
        raise KitError(f"aggregate {key[0]} {key[1]} {definition.name}: too many racing writers")

    def _payloads(
        self, state: WindowState, chosen: list[str], should_stop: Callable[[], bool]
    ) -> list[dict[str, Any]]:
        """The payload fields the definitions use, for ``chosen``: read from the archive once
        per event (one S3 read per archive file; the reader keeps decoded files)."""
        if not self._fields:
            return [{} for _ in chosen]  # counts need no payload
        for event_id in chosen:
            if event_id in state.fields:
                continue
            if should_stop():
                raise _Stopped
            payload = json.loads(self._reader.read(state.events[event_id].pointer).payload or "{}")
            state.fields[event_id] = {f: payload[f] for f in self._fields if f in payload}
        return [state.fields[e] for e in chosen]

    def _version(
        self,
        key: WindowKey,
        definition: AggregateDefinition,
        event_ids: list[str],
        digest: str,
        value: float | None,
        cause: str | None,
        latest: AggregateVersion | None,
    ) -> AggregateVersion:
        return AggregateVersion(
            entity_id=key[0],
            day=key[1],
            metric=definition.name,
            version=(latest.version + 1) if latest else 1,
            value=value,
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


def _in_window(item: dict[str, Any], key: WindowKey) -> bool:
    """Whether an identity item from the index is one of (entity, day)'s events."""
    event_time = str(item.get("event_time") or item.get("time_key") or "")
    return item.get("entity_id") == key[0] and event_time[:10] == key[1]


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
