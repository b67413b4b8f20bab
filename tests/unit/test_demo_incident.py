"""The script of ``pik demo``: what it sends is what it says it planted."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

from pik.demo import _tag
from pik.demo_incident import (
    CHECKOUT,
    GAP_HOURS,
    LATE_AFTER,
    MOBILE,
    STORM_PHONE,
    incident_window,
    plan_incident,
)
from schemas.envelope import parse_time

NOW = datetime(2025, 12, 29, 10, 17, tzinfo=UTC)


def _events(now: datetime = NOW, tag: str = "") -> list[tuple[datetime, dict[str, object]]]:
    """(ingest time, event) for every well-formed event the script sends."""
    out = []
    for send in plan_incident(now, tag).sends:
        for line in send.body.splitlines():
            event = json.loads(line)
            if isinstance(event.get("payload"), dict) and str(event.get("event_time", "")).endswith(
                "Z"
            ):
                out.append((send.at, event))
    return out


def test_the_script_is_the_same_for_the_same_hour_and_stays_in_its_window() -> None:
    incident = plan_incident(NOW)
    assert incident == plan_incident(NOW + timedelta(minutes=40))  # same whole hour
    window = incident_window(NOW)
    assert window.end == datetime(2025, 12, 29, 10, tzinfo=UTC)
    times = [s.at for s in incident.sends]
    assert times == sorted(times)
    assert window.start <= times[0] and times[-1] < window.end <= NOW


def test_the_gap_has_no_checkout_events_and_its_neighbours_do() -> None:
    gap = plan_incident(NOW).planted.gap
    hours: Counter[datetime] = Counter()
    for _, e in _events():
        if e["source"] == CHECKOUT:
            hours[parse_time(str(e["event_time"])).replace(minute=0, second=0)] += 1
    assert gap.end - gap.start == timedelta(hours=GAP_HOURS)
    assert all(hours[gap.start + timedelta(hours=h)] == 0 for h in range(GAP_HOURS))
    assert hours[gap.start - timedelta(hours=1)] > 0 and hours[gap.end] > 0


def test_late_and_repeated_events_are_the_ones_planted() -> None:
    planted = plan_incident(NOW).planted
    late = [
        e
        for at, e in _events()
        if at - parse_time(str(e["event_time"])) > LATE_AFTER and e["source"] == MOBILE
    ]
    assert len(late) == planted.late_count
    assert {e["entity_id"] for e in late} == set(planted.late_entities)
    sent = Counter(
        json.dumps(e, sort_keys=True) for _, e in _events() if e["entity_id"] == STORM_PHONE
    )
    assert sum(n - 1 for n in sent.values()) == planted.storm_duplicates


def test_a_tag_renames_the_sources_when_the_backend_already_has_them() -> None:
    assert _tag(set()) == ""
    assert _tag({"other"}) == ""
    assert _tag({CHECKOUT}) == "-2"
    assert _tag({MOBILE, f"{CHECKOUT}-2"}) == "-3"
    planted = plan_incident(NOW, "-2").planted
    assert (planted.checkout, planted.mobile) == (f"{CHECKOUT}-2", f"{MOBILE}-2")
