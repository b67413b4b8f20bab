"""Which sources and event types exist: the ``Catalog`` port and its index-backed adapter.

The index has no list of sources, and finding them by Scan is what the kit never does. So:

* ``sources``: read from catalog items when the sink records them — one per source, event type
  and day, under the ingest day and (for a valid event) its event day too, so that a window's
  own days name everything that happened or arrived in it; until then ``None``, and the caller
  must be told the source (``--source``).
* ``event_types``: from the catalog items too, else derived by a Query of ``by_source_day``
  that reads only the ``event_type`` attribute of the source's events in the window.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from infra.errors import KitError
from infra.index import QueryPage
from infra.index_queries import IndexQueries
from pik.investigate.window import Window

__all__ = ["Catalog", "IndexCatalog", "SourceCheck", "SourceRequired", "check_sources"]

MAX_KNOWN_SHOWN = 10


class SourceRequired(KitError):
    """No source was given and the kit keeps no catalog to find the sources from."""


class Catalog(Protocol):
    def sources(self, window: Window) -> list[str] | None:
        """Sources with events in ``window``; None when the kit cannot know without a Scan."""
        ...

    def event_types(self, source: str, window: Window) -> list[str]:
        """Event types ``source`` has events of in ``window``."""
        ...


def _items(pages: Iterator[QueryPage]) -> Iterator[dict[str, object]]:
    for page in pages:
        yield from page.items


class IndexCatalog:
    def __init__(self, queries: IndexQueries) -> None:
        self._queries = queries

    def _recorded(self, window: Window) -> list[tuple[str, str]]:
        return sorted(
            {
                (str(item["source"]), str(item["event_type"]))
                for day in window.days()
                for item in _items(self._queries.catalog(day))
            }
        )

    def sources(self, window: Window) -> list[str] | None:
        return sorted({source for source, _ in self._recorded(window)}) or None

    def event_types(self, source: str, window: Window) -> list[str]:
        recorded = [t for s, t in self._recorded(window) if s == source]
        if recorded:
            return recorded
        found = {
            str(item["event_type"])
            for day in window.days()
            for item in _items(
                self._queries.events(
                    source, day, window.low, window.high, attributes=("event_type",)
                )
            )
        }
        return sorted(found)


@dataclass(frozen=True, slots=True)
class SourceCheck:
    """The named sources the catalog has no events from in the window, with the nearest known
    names. A hint, not an error: a real source that sent nothing in the window is a gap."""

    unknown: dict[str, list[str]]  # name -> close matches among the known sources
    known: list[str]

    def to_json(self) -> list[dict[str, Any]]:
        return [{"source": name, "did_you_mean": near} for name, near in self.unknown.items()]

    def hints(self) -> list[str]:
        shown = ", ".join(self.known[:MAX_KNOWN_SHOWN]) or "none in this window"
        if len(self.known) > MAX_KNOWN_SHOWN:
            shown += f", ... ({len(self.known) - MAX_KNOWN_SHOWN} more)"
        lines = []
        for name, near in self.unknown.items():
            guess = f" (did you mean {' or '.join(near)}?)" if near else ""
            lines.append(
                f"no events from source {name} in the catalog; known sources: {shown}{guess}"
            )
        return lines


def check_sources(catalog: Catalog, given: Sequence[str], window: Window) -> SourceCheck:
    """Which of ``given`` the catalog saw no events from in ``window`` (nothing is unknown when
    no source is named)."""
    if not given:
        return SourceCheck({}, [])
    known = catalog.sources(window) or []
    unknown = {
        name: difflib.get_close_matches(name, known, n=3)
        for name in sorted(set(given))
        if name not in known
    }
    return SourceCheck(unknown, known)
