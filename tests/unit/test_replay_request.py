"""Replay request validation: every refusal is an ``InvalidReplayRequest`` with a stable reason."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from producers.replay import InvalidReplayRequest, parse_request

GUIDE = {
    "entity_id": "user_123",
    "start_time": "2025-12-28T00:00:00Z",
    "end_time": "2025-12-29T00:00:00Z",
    "limit": 50,
    "include_duplicates": False,
}


def test_the_user_guide_body_is_valid() -> None:
    request = parse_request(GUIDE)
    assert request.start_time == datetime(2025, 12, 28, tzinfo=UTC)
    assert request.limit == 50
    assert request.selection().entity_id == "user_123"
    assert request.to_json()["start_time"] == "2025-12-28T00:00:00Z"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"end_time": "2025-12-27T00:00:00Z"}, "invalid_window"),
        ({"end_time": "2025-12-28T00:00:00Z"}, "invalid_window"),  # empty window
        ({"start_time": "yesterday"}, "invalid_time"),
        ({"start_time": "2025-13-45T00:00:00Z"}, "invalid_time"),
        ({"start_time": "2025-12-28T00:00:00"}, "invalid_time"),  # no UTC offset
        ({"start_time": 1766880000}, "invalid_time"),
        ({"entity_id": None}, "no_selector"),
        ({"entity_id": ""}, "invalid_field"),
        ({"limit": -1}, "invalid_limit"),
        ({"limit": 0}, "invalid_limit"),
        ({"limit": "50"}, "invalid_limit"),
        ({"rate_limit": 0}, "invalid_rate_limit"),
        ({"include_duplicates": "yes"}, "invalid_field"),
        ({"min_lag_ms": -5}, "invalid_field"),
        ({"target": "ftp://somewhere"}, "invalid_target"),
        ({"colour": "blue"}, "unexpected_field"),
        (
            {"entity_id": None, "source": "demo", "end_time": "2027-01-01T00:00:00Z"},
            "invalid_window",
        ),
    ],
)
def test_invalid_requests_have_a_reason(changes: dict[str, Any], reason: str) -> None:
    body = {k: v for k, v in {**GUIDE, **changes}.items() if v is not None}
    with pytest.raises(InvalidReplayRequest) as caught:
        parse_request(body)
    assert caught.value.reason == reason
    assert caught.value.detail


def test_missing_window_and_non_object_bodies() -> None:
    with pytest.raises(InvalidReplayRequest) as caught:
        parse_request({"entity_id": "user_123"})
    assert caught.value.reason == "missing_field"
    with pytest.raises(InvalidReplayRequest) as caught:
        parse_request([GUIDE])
    assert caught.value.reason == "invalid_request"


def test_plain_dates_offsets_and_overrides() -> None:
    request = parse_request(
        {"source": "demo", "start_time": "2025-12-28", "end_time": "2025-12-28T10:00:00+05:00"},
        limit=3,
        target=None,
    )
    assert request.start_time == datetime(2025, 12, 28, tzinfo=UTC)
    assert request.end_time == datetime(2025, 12, 28, 5, tzinfo=UTC)  # 10:00+05:00
    assert request.limit == 3
    assert request.to_json()["end_time"] == "2025-12-28T05:00:00Z"


@pytest.mark.parametrize(
    "target",
    [
        "https://sqs.eu-west-1.amazonaws.com/123456789012/replays.fifo",
        "http://127.0.0.1:4566/000000000000/pik-replay",
        "sqs://pik-replay",
        "kinesis://orders",
        "arn:aws:kinesis:eu-west-1:123456789012:stream/orders",
        "file:///tmp/out.ndjson",
    ],
)
def test_known_target_forms(target: str) -> None:
    assert parse_request({**GUIDE, "target": target}).target == target
