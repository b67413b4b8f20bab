"""The incident ``pik demo`` plays, as data: three days of traffic from two sources with the user
guide's three problems planted in it, and a few bad events.

* ``checkout / order``: a collector forwards the shop's orders once an hour; for six hours on
  the second day nothing reaches the kit (the **missing window**).
* ``mobile / heartbeat``: eight phones send a heartbeat an hour. Two of them are offline for
  fifteen hours on the first day and sync what they held two days later (**late data**). One
  gets into a retry loop and re-sends its last three heartbeats thirty times within minutes (a
  **duplicate storm**). Now and then the checkout collector retries one order once: ordinary
  duplicates, which are not a storm.
* Eight **bad events** (a local time without an offset, a missing field, a payload that is not
  an object) are answered 422 and quarantined.

Everything is pure and relative to ``now``: ``plan_incident`` returns the requests to send (each
with the time the ingest clock shows while it is sent) and what the investigation must find.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pik.investigate.window import Granularity, Window, iso

__all__ = [
    "CHECKOUT",
    "DAYS",
    "LATE_AFTER",
    "MOBILE",
    "PHONES",
    "Incident",
    "Planted",
    "Send",
    "incident_window",
    "plan_incident",
]

CHECKOUT, ORDER = "checkout", "order"
MOBILE, HEARTBEAT = "mobile", "heartbeat"
DAYS = 3
PHONES = tuple(f"phone-{n:02d}" for n in range(1, 9))
CUSTOMERS = tuple(f"cust-{n}" for n in range(1001, 1041))
SEED = 28  # the traffic is random-looking but the same on every run
FLUSH_AT = timedelta(minutes=59, seconds=30)  # into each hour, the hour's events are sent

GAP_FROM_HOUR, GAP_HOURS = 30, 6  # checkout: nothing arrives in these hours after the start
OFFLINE_PHONES = ("phone-03", "phone-05")
OFFLINE_FROM_HOUR, OFFLINE_HOURS = 8, 15
LATE_SYNC_BEFORE_END = timedelta(minutes=15)  # when the offline phones finally sync
LATE_AFTER = timedelta(hours=6)  # later than this is "late" here; hourly flushes lag < 1 h

STORM_PHONE, STORM_HOUR, STORM_EVENTS, STORM_RETRIES = "phone-07", 50, 3, 30
STORM_AT, RETRY_EVERY = timedelta(minutes=10), timedelta(seconds=10)
ORDER_RETRY_EVERY = 7  # hours: the collector retries one order once (not a storm)

BAD_HOUR, BAD_AT = 60, timedelta(minutes=20)
NAIVE_TIME_ORDERS = 6  # event_time without an offset: the collector's one bad deploy


@dataclass(frozen=True, slots=True)
class Send:
    """One HTTP request of the script."""

    at: datetime  # what the ingest clock shows while it is sent
    path: str  # /ingest or /ingest/batch
    body: bytes
    what: str  # traffic, retry loop, late sync, bad events


@dataclass(frozen=True, slots=True)
class Planted:
    """What the investigation must find."""

    window: Window  # the whole incident, by event and by ingest time
    checkout: str  # the two source names (a tag is added when the backend already has them)
    mobile: str
    gap: Window  # the hours with no checkout orders
    late_count: int
    late_entities: tuple[str, ...]
    late_synced_at: datetime
    storm: Window  # the ingest hour of the retry loop
    storm_entity: str
    storm_duplicates: int
    storm_retries: int  # duplicates of each event the loop re-sent
    rejections: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "window": self.window.to_json(),
            "sources": [self.checkout, self.mobile],
            "gap": {"source": self.checkout, **self.gap.to_json()},
            "late": {
                "source": self.mobile,
                "count": self.late_count,
                "entities": list(self.late_entities),
                "synced_at": iso(self.late_synced_at),
                "later_than_ms": LATE_AFTER // timedelta(milliseconds=1),
            },
            "storm": {
                "source": self.mobile,
                **self.storm.to_json(),
                "entity_id": self.storm_entity,
                "duplicates": self.storm_duplicates,
                "retries_per_event": self.storm_retries,
            },
            "rejections": self.rejections,
        }


@dataclass(frozen=True, slots=True)
class Incident:
    planted: Planted
    sends: list[Send]

    def events(self) -> int:
        """Events sent (one per JSON line or body)."""
        return sum(s.body.count(b"\n") + 1 if s.path.endswith("batch") else 1 for s in self.sends)


def _ndjson(events: list[dict[str, Any]]) -> bytes:
    return "\n".join(json.dumps(e, separators=(",", ":")) for e in events).encode()


class _Traffic:
    """The events of each hour, deterministic for a given start."""

    def __init__(self, start: datetime, checkout: str, mobile: str) -> None:
        self.start = start
        self.checkout = checkout
        self.mobile = mobile
        self._rng = random.Random(SEED)

    def hour(self, h: int) -> datetime:
        return self.start + timedelta(hours=h)

    def orders(self, h: int) -> list[dict[str, Any]]:
        base = self.hour(h)
        busy = 8 <= base.hour < 22  # UTC shop hours: more orders by day
        count = (8 if busy else 4) + self._rng.randint(-1, 1)
        return [
            {
                "source": self.checkout,
                "event_type": ORDER,
                "entity_id": self._rng.choice(CUSTOMERS),
                "event_time": iso(base + timedelta(minutes=n * 60 // count, seconds=n * 7)),
                "payload": {
                    "order_id": f"ord-{h:03d}-{n}",
                    "amount_cents": self._rng.randrange(500, 20_000, 5),
                },
                "idempotency_key": f"ord-{h:03d}-{n}",
            }
            for n in range(count)
        ]

    def heartbeats(self, h: int) -> Iterator[dict[str, Any]]:
        base = self.hour(h)
        for i, phone in enumerate(PHONES):
            yield {
                "source": self.mobile,
                "event_type": HEARTBEAT,
                "entity_id": phone,
                "event_time": iso(base + timedelta(minutes=5 * i + 2, seconds=h % 60)),
                "payload": {"battery": 100 - (h + 7 * i) % 80, "steps": self._rng.randrange(900)},
            }


def _bad_events(at: datetime, checkout: str, mobile: str) -> tuple[list[Send], dict[str, int]]:
    naive = [
        {
            "source": checkout,
            "event_type": ORDER,
            "entity_id": CUSTOMERS[n],
            "event_time": iso(at - timedelta(minutes=n))[:19],  # no offset: invalid_time
            "payload": {"order_id": f"bad-{n}"},
        }
        for n in range(NAIVE_TIME_ORDERS)
    ]
    no_time = {"source": checkout, "event_type": ORDER, "entity_id": "cust-1001", "payload": {}}
    not_object = {
        "source": mobile,
        "event_type": HEARTBEAT,
        "entity_id": "phone-08",
        "event_time": iso(at),
        "payload": "battery 12%",
    }
    sends = [
        Send(at, "/ingest/batch", _ndjson(naive), "bad events"),
        Send(at, "/ingest", _ndjson([no_time]), "bad events"),
        Send(at, "/ingest", _ndjson([not_object]), "bad events"),
    ]
    reasons = {"invalid_time": NAIVE_TIME_ORDERS, "missing_field": 1, "payload_not_object": 1}
    return sends, reasons


def incident_window(now: datetime) -> Window:
    """The incident's hours: the ``DAYS`` that end at the last whole hour before ``now``."""
    end = Granularity.HOUR.floor(now)
    return Window(end - timedelta(days=DAYS), end)


def plan_incident(now: datetime, tag: str = "") -> Incident:
    """The requests of the incident of ``incident_window(now)``, and the facts planted in it.
    ``tag`` is appended to both source names."""
    window = incident_window(now)
    start, end = window.start, window.end
    checkout, mobile = CHECKOUT + tag, MOBILE + tag
    traffic = _Traffic(start, checkout, mobile)
    sends: list[Send] = []
    held: list[dict[str, Any]] = []  # the offline phones' heartbeats, synced late
    storm_phone: list[dict[str, Any]] = []  # the storm phone's heartbeats so far
    last_order: dict[str, Any] | None = None
    rejections: dict[str, int] = {}
    for h in range(DAYS * 24):
        base = traffic.hour(h)
        if h == STORM_HOUR:  # re-sends what the phone already sent, every few seconds
            again = _ndjson(storm_phone[-STORM_EVENTS:])
            sends.extend(
                Send(base + STORM_AT + k * RETRY_EVERY, "/ingest/batch", again, "retry loop")
                for k in range(STORM_RETRIES)
            )
        if h == BAD_HOUR:
            bad, rejections = _bad_events(base + BAD_AT, checkout, mobile)
            sends.extend(bad)
        events: list[dict[str, Any]] = []
        orders = traffic.orders(h)  # drawn even in the gap, so the traffic around it is fixed
        if not GAP_FROM_HOUR <= h < GAP_FROM_HOUR + GAP_HOURS:
            if h % ORDER_RETRY_EVERY == 3 and h != STORM_HOUR and last_order is not None:
                events.append(last_order)  # the collector's retry after a timeout
            events.extend(orders)
            last_order = orders[-1]
        offline = OFFLINE_FROM_HOUR <= h < OFFLINE_FROM_HOUR + OFFLINE_HOURS
        for beat in traffic.heartbeats(h):
            if offline and beat["entity_id"] in OFFLINE_PHONES:
                held.append(beat)
                continue
            if beat["entity_id"] == STORM_PHONE:
                storm_phone.append(beat)
            events.append(beat)
        sends.append(Send(base + FLUSH_AT, "/ingest/batch", _ndjson(events), "traffic"))
    synced_at = end - LATE_SYNC_BEFORE_END
    sends.append(Send(synced_at, "/ingest/batch", _ndjson(held), "late sync"))
    sends.sort(key=lambda s: s.at)  # stable: the order within one instant is kept
    storm_start = start + timedelta(hours=STORM_HOUR)
    gap_start = start + timedelta(hours=GAP_FROM_HOUR)
    planted = Planted(
        window=window,
        checkout=checkout,
        mobile=mobile,
        gap=Window(gap_start, gap_start + timedelta(hours=GAP_HOURS)),
        late_count=len(held),
        late_entities=OFFLINE_PHONES,
        late_synced_at=synced_at,
        storm=Window(storm_start, storm_start + timedelta(hours=1)),
        storm_entity=STORM_PHONE,
        storm_duplicates=STORM_EVENTS * STORM_RETRIES,
        storm_retries=STORM_RETRIES,
        rejections=rejections,
    )
    return Incident(planted, sends)
