"""schemas/identity.py: event identity is stable, and says "same event" exactly when it should."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from schemas.envelope import Event, parse_body
from schemas.identity import canonical_json, event_id, rejected_event_id
from tests.unit.support import GUIDE_EVENT, event_body

# Pinned once: a change here means every archived id changes (cross-version stability).
GUIDE_EVENT_ID = "4f723eb814fde4acf00caa9c3a310b03abf4ee985df602d1c2573e39073eabf1"
GUIDE_CONTENT_ID = "9664ab5e2fff9ed9e3d6f4c7903cb269bf4cc8823a23a5e2d6a0f7fb6b8a3870"


def event(raw: bytes) -> Event:
    parsed = parse_body(raw)
    assert isinstance(parsed, Event), parsed
    return parsed


def keyed(**changes: Any) -> Event:
    return event(json.dumps({**GUIDE_EVENT, **changes}).encode())


def content(**changes: Any) -> Event:
    return event(event_body(**changes))


def test_guide_event_id_is_pinned() -> None:
    assert event_id(keyed()) == GUIDE_EVENT_ID
    # and it is the documented recipe, not an accident of the implementation
    recipe = '["pik.v1","demo","heartbeat","user_123","key","optional-stable-producer-key"]'
    assert hashlib.sha256(recipe.encode()).hexdigest() == GUIDE_EVENT_ID


def test_guide_content_id_is_pinned() -> None:
    assert event_id(content()) == GUIDE_CONTENT_ID
    recipe = (
        '["pik.v1","demo","heartbeat","user_123","content",'
        '"2025-12-28T23:59:59.000000Z",{"steps":10}]'
    )
    assert hashlib.sha256(recipe.encode()).hexdigest() == GUIDE_CONTENT_ID


def test_event_id_is_sha256_hex() -> None:
    value = event_id(content())
    assert len(value) == 64
    assert int(value, 16) >= 0


def test_idempotency_key_identity_ignores_payload_and_time() -> None:
    base = event_id(keyed())
    assert event_id(keyed(payload={"steps": 11})) == base
    assert event_id(keyed(event_time="2030-01-01T00:00:00Z")) == base


def test_idempotency_key_identity_still_depends_on_the_envelope() -> None:
    base = event_id(keyed())
    assert event_id(keyed(idempotency_key="other")) != base
    assert event_id(keyed(entity_id="user_124")) != base
    assert event_id(keyed(source="other")) != base
    assert event_id(keyed(event_type="other")) != base


def test_a_keyed_event_differs_from_the_same_unkeyed_event() -> None:
    assert event_id(keyed()) != event_id(content())


def test_content_identity_changes_with_payload_or_time() -> None:
    base = event_id(content())
    assert event_id(content(payload={"steps": 11})) != base
    assert event_id(content(event_time="2025-12-28T23:59:58Z")) != base
    assert event_id(content(entity_id="user_124")) != base


def test_sub_second_times_are_distinct_events() -> None:
    a = content(event_time="2025-12-28T23:59:59.000001Z")
    b = content(event_time="2025-12-28T23:59:59.000002Z")
    assert event_id(a) != event_id(b)
    assert event_id(a) != event_id(content())


def test_same_instant_in_different_offsets_is_one_event() -> None:
    assert event_id(content(event_time="2025-12-29T01:59:59+02:00")) == GUIDE_CONTENT_ID
    assert event_id(content(event_time="2025-12-28T18:59:59.000-05:00")) == GUIDE_CONTENT_ID


def test_payload_key_order_and_whitespace_do_not_matter() -> None:
    a = b'{"source":"demo","event_type":"heartbeat","entity_id":"user_123",'
    a += b'"event_time":"2025-12-28T23:59:59Z","payload":{"a":1,"b":{"x":[1,2],"y":"z"}}}'
    b = b'{ "payload" : { "b" : { "y" : "z" , "x" : [ 1 , 2 ] } ,\n "a" : 1 },'
    b += b' "entity_id": "user_123", "event_type": "heartbeat", "source": "demo",'
    b += b' "event_time": "2025-12-28T23:59:59Z" }'
    assert event_id(event(a)) == event_id(event(b))


def test_list_order_in_payload_matters() -> None:
    assert event_id(content(payload={"l": [1, 2]})) != event_id(content(payload={"l": [2, 1]}))


def test_integral_floats_equal_integers() -> None:
    ten = event_body().replace(b'{"steps": 10}', b'{"steps": 10.0}')
    assert event_id(event(ten)) == GUIDE_CONTENT_ID
    assert event_id(content(payload={"steps": 10.5})) != GUIDE_CONTENT_ID


def test_canonical_json_is_compact_sorted_and_keeps_unicode() -> None:
    assert canonical_json({"b": 1, "a": [2.0, "é"]}) == '{"a":[2,"é"],"b":1}'


def test_rejected_ids_are_stable_and_differ_per_raw_bytes() -> None:
    assert rejected_event_id(b"not json") == rejected_event_id(b"not json")
    assert rejected_event_id(b"not json") != rejected_event_id(b"not json ")
    assert rejected_event_id(b"") != rejected_event_id(b"\x00")
    assert len(rejected_event_id(b"x")) == 64


def test_rejected_id_never_collides_with_an_event_id() -> None:
    raw = event_body()
    assert rejected_event_id(raw) != event_id(event(raw))
    assert rejected_event_id(raw) != hashlib.sha256(raw).hexdigest()
