"""Rollups: per source, event type and hour, what the sink indexed, counted as it indexes it.

The investigation commands read these instead of events (``pik audit``, ``gaps`` and ``lag``
over 7 days of a source read a few hundred rollup items whether it holds ten thousand events or
a billion). Counters only, each added (``ADD``) in the very ``TransactWriteItems`` that writes
the claim or occurrence item it counts, so a rollup is exact under retries, redeliveries and
crashes: a delivery is counted exactly when its index item is created, and a delivery whose item
exists already (a re-run, a redelivery) fails its condition and adds nothing. ``ADD`` commutes,
so any number of writers can share an item; each writer picks one of ``ROLLUP_SHARDS`` items
per hour, which keeps concurrent writers' transactions off each other's items. One partition
key per source and day, so a reader of a day makes one Query; it takes one update per
transaction (100 events), not one per event: at 10,000 events/s of one source, ~100 updates of
a ~2 KB item, ~400 WCU/s (``bench/cost.py`` prices it).

Items, under the table key (``event_id``, ``item``):

* ``event_id = "late#<source>#<event type>#<event day>"``, ``item =
  "<10^15 - lag, 16 digits>#<event id>"``: the latest-arriving first copies of a day, largest
  lag first. A writer adds one (in the claim's transaction) only when it is among the
  ``LATE_KEEP`` largest lags that writer has indexed for that day (to two significant digits),
  at most ``LATE_RATE`` a second, so a day holds a few hundred; the day's ``LATE_KEEP`` latest
  are among them (an event in the top of the whole day is in the top of what any one writer saw
  up to it), but for ties at that precision and a writer over its rate.
* ``event_id = "roll#<source>#<day>"``, ``item = "<hour>#<event type>#<shard>"`` (``hour``:
  ``YYYY-MM-DDTHH``, UTC), with ``source``, ``event_type``, ``hour`` and the counters:

  * by ingest hour: ``acc`` first copies, ``dup`` duplicates, ``rej`` rejections,
    ``rz_<reason>`` rejections by reason;
  * by event hour: ``ev`` first copies, ``lg_<lag>`` first copies by lag (event axis).

* ``event_id = "roll#<source>#<day>#arrival"``, same ``item``: by ingest hour,
  ``la_<event day>_<lag>`` first copies by the day of their event time and lag (``pik lag --by
  arrival``: what arrived late in a window, and for which day). A partition of its own, so one
  busy source's updates spread over two keys and the readers of the event axis do not read it.

  ``<lag>`` is ``lag_bucket(lag_ms)``: exact below 100 ms, two significant digits above (so an
  hour holds at most a few hundred lag counters, and a percentile read from them is within 10 %
  of the exact one, usually within 2 %).

``recount`` computes the same counters from index or archive items: the in-memory index answers
with it, and the crash suite checks the stored rollups against it.
"""

from __future__ import annotations

import hashlib
import json
import random
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACCEPTED",
    "ARRIVAL_LAG_PREFIX",
    "DUPLICATE",
    "EVENTS",
    "LATE_ATTRIBUTES",
    "LATE_KEEP",
    "LATE_PREFIX",
    "LATE_RATE",
    "REJECTED",
    "ROLLUP_PREFIX",
    "ROLLUP_SHARDS",
    "Delta",
    "Rollup",
    "RollupKey",
    "accepted_counts",
    "add_into",
    "lag_bucket",
    "lag_counts",
    "late_bundle",
    "late_entries",
    "late_entry",
    "late_item",
    "late_key_range",
    "late_partition",
    "late_top",
    "merge_rollups",
    "occurrence_counts",
    "pick_shard",
    "recount",
    "rollup_items",
    "rollup_partition",
    "update_ops",
]

ROLLUP_PREFIX = "roll#"
LATE_PREFIX = "late#"
LATE_KEEP = 50  # latest arrivals kept per source, event type, event day and writer
LATE_RATE = 300  # entries a writer adds per second and key at most (~600 WCU/s)
LATE_ATTRIBUTES = (
    "event_id",
    "source",
    "event_type",
    "entity_id",
    "event_time",
    "ingest_time",
    "lag_ms",
    "first_occurrence",
)
_LAG_SPAN = 10**15  # > any lag in ms: sort keys of inverted lags stay positive, fixed width
ROLLUP_SHARDS = 4  # items per source, type and hour; a writer uses one of them
ACCEPTED, DUPLICATE, REJECTED, EVENTS = "acc", "dup", "rej", "ev"
REASON_PREFIX = "rz_"  # rejections by reason (ingest hour)
EVENT_LAG_PREFIX = "lg_"  # first copies by lag (event hour)
ARRIVAL_LAG_PREFIX = "la_"  # first copies by event day and lag (ingest hour, own partition)
ARRIVAL_SUFFIX = "#arrival"
UNKNOWN = "_unknown"

RollupKey = tuple[str, str]  # (event_id, item) of a rollup item


def pick_shard() -> int:
    return random.randrange(ROLLUP_SHARDS)


def rollup_partition(source: str, day: str, *, arrival: bool = False) -> str:
    """The partition of one source's rollups of one day (every writer shard: one Query);
    ``arrival``: its ``la_`` counters'."""
    return f"{ROLLUP_PREFIX}{source}#{day}" + (ARRIVAL_SUFFIX if arrival else "")


def late_partition(source: str, event_type: str, day: str) -> str:
    return f"{LATE_PREFIX}{source}#{event_type}#{day}"


def late_item(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The latest-arrivals entry of a first copy (``fields``: ``LATE_ATTRIBUTES``, times as
    ``format_time`` text); its sort key puts the largest lag first."""
    lag = int(fields["lag_ms"])
    partition = late_partition(
        str(fields["source"]), str(fields["event_type"]), str(fields["event_time"])[:10]
    )
    return {
        **{a: fields[a] for a in LATE_ATTRIBUTES},
        "event_id": partition,
        "item": f"{_inverted(lag):016d}#{fields['event_id']}",
        "late_event_id": fields["event_id"],
    }


def _inverted(lag: int) -> int:
    return min(max(_LAG_SPAN - lag, 0), 10 * _LAG_SPAN - 1)


def late_key_range(min_lag: int, max_lag: int) -> tuple[str, str]:
    """The sort keys between which the entries with ``min_lag <= lag <= max_lag`` lie."""
    return f"{_inverted(max_lag):016d}", f"{_inverted(min_lag):016d}~"


def late_entry(item: Mapping[str, Any]) -> dict[str, Any]:
    """A latest-arrivals item as the first copy it stands for."""
    return {**{a: item.get(a) for a in LATE_ATTRIBUTES}, "event_id": item["late_event_id"]}


def late_bundle(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One item holding a batch's latest-arrivals entries of one source, type and event day
    (``fields`` as ``late_item``'s), largest lag first: a batch pays for one small item per
    key, not one per entry. Its sort key starts with its first entry's (largest lag, then event
    id), so a list still reads in rank order of its items' first entries; ``top`` is that lag."""
    rows = sorted(entries, key=lambda e: (-int(e["lag_ms"]), str(e["event_id"])))
    top = int(rows[0]["lag_ms"])
    body = json.dumps([[e[a] for a in LATE_ATTRIBUTES] for e in rows], separators=(",", ":"))
    digest = hashlib.sha256(" ".join(str(e["event_id"]) for e in rows).encode()).hexdigest()
    first = rows[0]
    return {
        "event_id": late_partition(
            str(first["source"]), str(first["event_type"]), str(first["event_time"])[:10]
        ),
        "item": f"{_inverted(top):016d}#{first['event_id']}#{digest[:16]}",
        "top": top,
        "n": len(rows),
        "e": zlib.compress(body.encode(), 6),
    }


def late_entries(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The first copies a latest-arrivals item stands for (a bundle, or one entry)."""
    raw = item.get("e")
    if raw is None:
        return [late_entry(item)]
    rows = json.loads(zlib.decompress(raw.value if hasattr(raw, "value") else bytes(raw)))
    return [dict(zip(LATE_ATTRIBUTES, row, strict=True)) for row in rows]


def late_top(item: Mapping[str, Any]) -> tuple[int, str]:
    """The rank of a latest-arrivals item's first entry, as ``(-lag, event id)``: every entry
    of the items after it in its list ranks after that."""
    if "top" in item:
        return -int(item["top"]), str(item["item"]).split("#")[1]
    return -int(item["lag_ms"]), str(item["late_event_id"])


def lag_bucket(lag_ms: int) -> int:
    """``lag_ms`` to two significant digits, toward zero (exact below 100 ms): 1,234 -> 1,200."""
    size = abs(lag_ms)
    if size < 100:
        return lag_ms
    step = 10 ** (len(str(size)) - 2)
    bucket = size // step * step
    return bucket if lag_ms >= 0 else -bucket


@dataclass(slots=True)
class Rollup:
    """One (source, event type, hour)'s counters (of one item, or merged over shards)."""

    source: str
    event_type: str
    hour: str
    counts: Counter[str] = field(default_factory=Counter)

    def count(self, name: str) -> int:
        return int(self.counts.get(name, 0))

    def by_prefix(self, prefix: str) -> dict[str, int]:
        return {k[len(prefix) :]: int(v) for k, v in self.counts.items() if k.startswith(prefix)}

    def lags(self) -> Counter[int]:
        """Lag bucket -> first copies whose event time is in this hour."""
        return Counter({int(k): v for k, v in self.by_prefix(EVENT_LAG_PREFIX).items()})

    def arrivals(self) -> dict[tuple[str, int], int]:
        """(event day, lag bucket) -> first copies ingested in this hour."""
        out: dict[tuple[str, int], int] = {}
        for name, n in self.by_prefix(ARRIVAL_LAG_PREFIX).items():
            day, _, bucket = name.partition("_")
            out[(day, int(bucket))] = n
        return out

    def reasons(self) -> dict[str, int]:
        return self.by_prefix(REASON_PREFIX)

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Rollup:
        meta = {"event_id", "item", "source", "event_type", "hour"}
        counts = Counter({k: int(v) for k, v in item.items() if k not in meta})
        return cls(str(item["source"]), str(item["event_type"]), str(item["hour"]), counts)


Delta = dict[tuple[str, str, str], Counter[str]]  # (source, event type, hour) -> counters


def accepted_counts(
    source: str, event_type: str, ingest_time: str, event_time: str, lag_ms: int
) -> Delta:
    """What one first copy adds (times as ``format_time`` text)."""
    at_ingest = Counter(
        {ACCEPTED: 1, f"{ARRIVAL_LAG_PREFIX}{event_time[:10]}_{lag_bucket(lag_ms)}": 1}
    )
    at_event = Counter({EVENTS: 1, f"{EVENT_LAG_PREFIX}{lag_bucket(lag_ms)}": 1})
    ingest_hour, event_hour = ingest_time[:13], event_time[:13]
    if ingest_hour == event_hour:
        return {(source, event_type, ingest_hour): at_ingest + at_event}
    return {
        (source, event_type, ingest_hour): at_ingest,
        (source, event_type, event_hour): at_event,
    }


def occurrence_counts(
    source: str | None, event_type: str | None, ingest_time: str, status: str, reason: str | None
) -> Delta:
    """What one duplicate or rejected delivery adds."""
    counts = Counter({DUPLICATE if status == "DUPLICATE" else REJECTED: 1})
    if status == "REJECTED":
        counts[REASON_PREFIX + (reason or UNKNOWN)] += 1
    return {(source or UNKNOWN, event_type or UNKNOWN, ingest_time[:13]): counts}


def add_into(total: Delta, delta: Delta) -> None:
    for key, counts in delta.items():
        total.setdefault(key, Counter()).update(counts)


def rollup_key(source: str, event_type: str, hour: str, shard: int) -> RollupKey:
    return rollup_partition(source, hour[:10]), f"{hour}#{event_type}#{shard}"


def rollup_items(counts: Mapping[str, int]) -> list[bool]:
    """The rollup items ``counts`` updates: ``False`` the hour's, ``True`` its arrival one's."""
    arrival = [name.startswith(ARRIVAL_LAG_PREFIX) for name in counts]
    return sorted(set(arrival))


def update_ops(
    table: str, source: str, event_type: str, hour: str, shard: int, counts: Counter[str]
) -> list[dict[str, Any]]:
    """The ``TransactWriteItems`` Updates adding ``counts`` to one hour's rollup items (the
    ``la_`` counters to its arrival item), in ``rollup_items`` order."""
    ops = []
    for arrival in rollup_items(counts):
        part = Counter(
            {k: v for k, v in counts.items() if k.startswith(ARRIVAL_LAG_PREFIX) == arrival}
        )
        ops.append(_update_op(table, source, event_type, hour, shard, part, arrival=arrival))
    return ops


def _update_op(
    table: str,
    source: str,
    event_type: str,
    hour: str,
    shard: int,
    counts: Counter[str],
    *,
    arrival: bool,
) -> dict[str, Any]:
    partition, item = rollup_key(source, event_type, hour, shard)
    if arrival:
        partition += ARRIVAL_SUFFIX
    names = {"#s": "source", "#t": "event_type", "#h": "hour"}
    values: dict[str, Any] = {":s": {"S": source}, ":t": {"S": event_type}, ":h": {"S": hour}}
    adds = []
    for n, (name, value) in enumerate(sorted(counts.items())):
        names[f"#c{n}"] = name
        values[f":c{n}"] = {"N": str(value)}
        adds.append(f"#c{n} :c{n}")
    return {
        "Update": {
            "TableName": table,
            "Key": {"event_id": {"S": partition}, "item": {"S": item}},
            "UpdateExpression": "SET #s = :s, #t = :t, #h = :h ADD " + ", ".join(adds),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }


def merge_rollups(rollups: Iterable[Rollup]) -> list[Rollup]:
    """The items of several shards as one ``Rollup`` per (source, event type, hour), sorted."""
    merged: dict[tuple[str, str, str], Rollup] = {}
    for r in rollups:
        key = (r.source, r.event_type, r.hour)
        into = merged.setdefault(key, Rollup(*key))
        into.counts.update(r.counts)
    return [merged[k] for k in sorted(merged)]


def recount(items: Iterable[Mapping[str, Any]]) -> list[Rollup]:
    """The rollups of index items (identity and occurrence items) or of archived records read
    as their index status (``status``, ``source``, ``event_type``, ``ingest_time``,
    ``event_time``, ``lag_ms``, ``reason``), counted from scratch."""
    total: Delta = {}
    for i in items:
        status = str(i["status"])
        if status == "ACCEPTED":
            delta = accepted_counts(
                str(i["source"]),
                str(i["event_type"]),
                str(i["ingest_time"]),
                str(i["event_time"]),
                int(i.get("lag_ms") or 0),
            )
        else:
            delta = occurrence_counts(
                i.get("source"), i.get("event_type"), str(i["ingest_time"]), status, i.get("reason")
            )
        add_into(total, delta)
    return [Rollup(s, t, h, c) for (s, t, h), c in sorted(total.items())]


def lag_counts(rollups: Iterable[Rollup]) -> Counter[int]:
    total: Counter[int] = Counter()
    for r in rollups:
        total.update(r.lags())
    return total
