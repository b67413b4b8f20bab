"""What the processor remembers of the windows it handled, so that a window is read once per
replay rather than once per batch.

A window is one (entity, day). Its state holds the accepted events its last full read from the
index found, plus those added since by messages naming an event that read did not have; the
payload fields the definitions need, as read from the archive; and the latest version of each
metric as last read or written. A message whose event is already among the window's events
brings nothing new: it costs no window read and no archive read.

The state answers only for the replays whose messages it has seen. The first message of another
replay reads the window again, so events indexed since (and not sent by any replay) are counted
then, as a from-scratch recomputation would count them. State is dropped after any error in its
window, and the least recently used windows go first when the cache holds more than
``MAX_CACHED_EVENTS`` events (never the window in hand, however large).
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from infra.aggregates import AggregateVersion
from infra.archive import ArchivePointer

MAX_CACHED_EVENTS = 100_000

WindowKey = tuple[str, str]  # (entity_id, day)


@dataclass(frozen=True, slots=True)
class WindowEvent:
    """What a definition needs of one input: its filters' fields and where its payload is."""

    source: str | None
    event_type: str | None
    pointer: ArchivePointer

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> WindowEvent:
        # Interned: a window's events share a few sources, types, buckets and files.
        return cls(
            source=_interned(item.get("source")),
            event_type=_interned(item.get("event_type")),
            pointer=ArchivePointer(
                sys.intern(str(item["archive_bucket"])),
                sys.intern(str(item["archive_key"])),
                int(item["archive_position"]),
            ),
        )


def _interned(value: Any) -> str | None:
    return None if value is None else sys.intern(str(value))


@dataclass(slots=True)
class WindowState:
    replays: set[str | None]
    events: dict[str, WindowEvent]  # event id → the input
    latest: dict[str, AggregateVersion | None]  # metric → its latest version, as last known
    outside: set[str] = field(default_factory=set)  # ids messages named that are not inputs
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)  # event id → payload fields

    def size(self) -> int:
        return len(self.events) + len(self.outside)


class WindowCache:
    """Window states, least recently used first out once they hold too many events."""

    def __init__(self, max_events: int = MAX_CACHED_EVENTS) -> None:
        self._states: OrderedDict[WindowKey, WindowState] = OrderedDict()
        self._sizes: dict[WindowKey, int] = {}
        self._max = max_events
        self._total = 0

    def __len__(self) -> int:
        return len(self._states)

    def get(self, key: WindowKey) -> WindowState | None:
        state = self._states.get(key)
        if state is not None:
            self._states.move_to_end(key)
        return state

    def put(self, key: WindowKey, state: WindowState) -> None:
        """Keep ``state`` (again, after it grew), evicting others while over the limit."""
        self.drop(key)
        self._states[key] = state
        self._sizes[key] = size = state.size()
        self._total += size
        while self._total > self._max and len(self._states) > 1:
            old, _ = self._states.popitem(last=False)
            self._total -= self._sizes.pop(old)

    def drop(self, key: WindowKey) -> None:
        self._states.pop(key, None)
        self._total -= self._sizes.pop(key, 0)
