"""Time bundles: an archive file's first copies of one source, event type and event hour in one
item.

Selections by source and event type (replay, the processor's windows, ``pik`` investigations
that list events) read first copies in event-time order. A GSI entry per event would do it, at
1 WRU and ~600 bytes an event whatever its size; a bundle does it at ~0.1 WRU and ~60 bytes: the
entries of one file's own claims (``infra.claims``), for one (source, event type, event hour),
in one item. So a bundle holds exactly the claims the file made (one another delivery won is not
in it), and a re-run or a sweep of the file writes the very same item again.

Item, under the table key (``event_id``, ``item``):

* ``event_id`` = ``tb#<source>#<event type>#<event day>#<shard>``: one partition per day, so
  one Query reads a day (shard 0 of a narrow key, every shard of a wide one, as
  ``infra.index_layout`` says for its index keys).
* ``item`` = ``<smallest time_key>|<digest>``: sorted by the first event time, and every entry
  is in the same event hour, so the bundles of ``[low, high]`` are those whose ``item`` lies in
  ``[hour of low, high]``.
* ``s``, ``t``: the source and event type; ``n``: the number of entries; ``f``: the archive files, each once; ``e``: the entries as
  zlib-compressed JSON rows, sorted by ``time_key``.

``BundleReader`` merges the bundles of a partition into one stream in ``time_key`` order: a
bundle is decoded when the stream reaches its first key, so what is held at once is the bundles
that overlap in time (the batches in flight when those events were written), not the day.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

__all__ = [
    "BUNDLE_ATTRIBUTES",
    "BUNDLE_PREFIX",
    "bundle_item",
    "bundle_partition",
    "bundle_range",
    "decode_bundle",
    "group_key",
    "merge_bundles",
    "merge_pages",
]

BUNDLE_PREFIX = "tb#"
_SEPARATOR = "|"
# What an entry stands for: the identity item's attributes a selection reads.
BUNDLE_ATTRIBUTES = frozenset(
    {
        "event_id",
        "item",
        "time_key",
        "source",
        "event_type",
        "entity_id",
        "event_time",
        "ingest_time",
        "lag_ms",
        "status",
        "payload_bytes",
        "archive_bucket",
        "archive_key",
        "archive_position",
    }
)
_ROW = ("event_id", "event_time", "entity_id", "ingest_time", "lag_ms", "payload_bytes")


def bundle_partition(source: str, event_type: str, day: str, shard: int) -> str:
    return f"{BUNDLE_PREFIX}{source}#{event_type}#{day}#{shard}"


def group_key(item: Mapping[str, Any]) -> tuple[str, str, str]:
    """(source, event type, event hour) of an identity item: the entries one bundle can hold."""
    return str(item["source"]), str(item["event_type"]), str(item["event_time"])[:13]


def bundle_item(items: Sequence[Mapping[str, Any]], shard: int) -> dict[str, Any]:
    """The bundle of identity items (``infra.index.claim_item``) of one ``group_key``."""
    rows = sorted(items, key=lambda i: str(i["time_key"]))
    source, event_type, hour = group_key(rows[0])
    files: dict[tuple[str, str], int] = {}
    encoded = []
    for i in rows:
        place = files.setdefault((str(i["archive_bucket"]), str(i["archive_key"])), len(files))
        encoded.append([*(i[a] for a in _ROW), place, int(i["archive_position"])])
    body = json.dumps(encoded, separators=(",", ":")).encode()
    digest = hashlib.sha256(" ".join(str(i["event_id"]) for i in rows).encode()).hexdigest()
    return {
        "event_id": bundle_partition(source, event_type, hour[:10], shard),
        "item": f"{rows[0]['time_key']}{_SEPARATOR}{digest[:16]}",
        "s": source,
        "t": event_type,
        "n": len(rows),
        "f": [list(f) for f in files],
        "e": zlib.compress(body, 6),
    }


def decode_bundle(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A bundle's entries as the identity items they stand for (``BUNDLE_ATTRIBUTES``)."""
    source, event_type = str(item["s"]), str(item["t"])
    files = [(str(b), str(k)) for b, k in item["f"]]
    raw = item["e"]
    rows = json.loads(zlib.decompress(raw.value if hasattr(raw, "value") else bytes(raw)))
    out = []
    for row in rows:
        entry = dict(zip(_ROW, row[: len(_ROW)], strict=True))
        bucket, key = files[int(row[len(_ROW)])]
        entry |= {
            "item": "event",
            "time_key": f"{entry['event_time']}#{entry['event_id']}",
            "source": source,
            "event_type": event_type,
            "status": "ACCEPTED",
            "archive_bucket": bucket,
            "archive_key": key,
            "archive_position": int(row[len(_ROW) + 1]),
        }
        out.append(entry)
    return out


def bundle_range(low: str, high: str) -> tuple[str, str]:
    """The ``item`` range of the bundles that may hold a ``time_key`` in ``[low, high]``: every
    entry of a bundle is in the event hour of its first."""
    return (low[:13] or "0"), high + "~"


class _Merge:
    """Entries of bundles added in ``item`` order, handed out in ``time_key`` order."""

    def __init__(self, low: str, high: str) -> None:
        self.low, self.high = low, high
        self.scanned = 0  # entries decoded
        self._heap: list[tuple[str, int, dict[str, Any], Iterator[dict[str, Any]]]] = []
        self._seq = 0

    def _push(self, entries: Iterator[dict[str, Any]]) -> None:
        for entry in entries:
            heapq.heappush(self._heap, (str(entry["time_key"]), self._seq, entry, entries))
            self._seq += 1
            return

    def add(self, bundle: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Add a bundle; yield what is now known to come before every later bundle's entries."""
        yield from self.until(str(bundle["item"]).rsplit(_SEPARATOR, 1)[0])
        entries = decode_bundle(bundle)
        self.scanned += len(entries)
        self._push(iter(entries))

    def until(self, bound: str | None) -> Iterator[dict[str, Any]]:
        """The entries before ``bound`` (``None``: all that are left)."""
        heap = self._heap
        while heap and (bound is None or heap[0][0] < bound):
            key, _, entry, rest = heapq.heappop(heap)
            self._push(rest)
            if self.low <= key <= self.high:
                yield entry


def merge_bundles(
    bundles: Iterable[Mapping[str, Any]], low: str, high: str, scanned: list[int]
) -> Iterator[dict[str, Any]]:
    """The entries with ``low <= time_key <= high`` of bundles read in ``item`` order, in
    ``time_key`` order; ``scanned[0]`` counts every entry decoded."""
    merge = _Merge(low, high)
    for bundle in bundles:
        before = merge.scanned
        yield from merge.add(bundle)
        scanned[0] += merge.scanned - before
    yield from merge.until(None)


def merge_pages(
    pages: Iterable[Sequence[Mapping[str, Any]]], low: str, high: str
) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """``merge_bundles`` one Query page at a time: for each page of bundles, (the entries in
    ``[low, high]`` it makes known, in order; the entries it decoded). One page is read ahead,
    so that the last one carries what is left."""
    merge = _Merge(low, high)
    it = iter(pages)
    page = next(it, None)
    while page is not None:
        following = next(it, None)
        before = merge.scanned
        out = [e for bundle in page for e in merge.add(bundle)]
        if following is None:
            out += merge.until(None)
        yield out, merge.scanned - before
        page = following
