"""infra/keys.py: archive keys are Hive-style, deterministic, and no value escapes its segment."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from infra.keys import MAX_SEGMENT_CHARS, UNKNOWN_SEGMENT, archive_key, escape_segment

AT = datetime(2025, 12, 29, 1, 2, 3, tzinfo=UTC)
HOSTILE = ["../x", "..", ".", "a/b", "/", "=", "a=b/c", "ü/日本", "%2F", "a b", "\\..\\", "\n"]

LAYOUT = re.compile(
    r"^(raw|quarantine)/source=(?P<source>[^/]+)/event_type=(?P<type>[^/]+)"
    r"/ingest_date=(?P<date>\d{4}-\d{2}-\d{2})/hour=(?P<hour>\d{2})"
    r"/(?P<name>[^/]+)\.avro$"
)


def key(**changes: object) -> str:
    args: dict[str, object] = {
        "quarantine": False,
        "source": "demo",
        "event_type": "heartbeat",
        "ingest_time": AT,
        "batch": "b1",
        "first": "0",
        "last": "3",
    }
    args.update(changes)
    return archive_key(**args)  # type: ignore[arg-type]


def test_layout_of_a_raw_key() -> None:
    assert key() == (
        "raw/source=demo/event_type=heartbeat/ingest_date=2025-12-29/hour=01/b1-0-3.avro"
    )


def test_rejected_records_go_under_quarantine_with_the_same_layout() -> None:
    assert key(quarantine=True) == (
        "quarantine/source=demo/event_type=heartbeat/ingest_date=2025-12-29/hour=01/b1-0-3.avro"
    )


def test_hour_is_zero_padded_24h() -> None:
    late = datetime(2025, 1, 2, 23, 59, tzinfo=UTC)
    assert "/ingest_date=2025-01-02/hour=23/" in key(ingest_time=late)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_cannot_escape_their_segment(value: str) -> None:
    k = key(source=value, event_type=value, batch=value, first=value, last=value)
    match = LAYOUT.match(k)
    assert match, k
    segments = k.split("/")
    assert len(segments) == 6
    assert not {".", ".."} & set(segments)
    assert all(seg.isascii() for seg in segments)
    assert match["source"].count("=") == 0


@pytest.mark.parametrize("value", HOSTILE)
def test_escaped_segment_uses_only_safe_characters(value: str) -> None:
    assert re.fullmatch(r"[A-Za-z0-9_%-]+", escape_segment(value))


def test_escaping_is_hive_percent_encoding_of_utf8() -> None:
    assert escape_segment("a/b") == "a%2Fb"
    assert escape_segment("../x") == "%2E%2E%2Fx"
    assert escape_segment("=") == "%3D"
    assert escape_segment("ü") == "%C3%BC"
    assert escape_segment("order_created-v2") == "order_created-v2"


def test_empty_or_missing_values_become_unknown() -> None:
    assert escape_segment("") == UNKNOWN_SEGMENT
    assert escape_segment(None) == UNKNOWN_SEGMENT
    assert "/source=_unknown/event_type=_unknown/" in key(source=None, event_type="")


def test_distinct_values_get_distinct_segments() -> None:
    values = [*HOSTILE, "a%2Fb", "a_b", "a-b", "A/B"]
    assert len({escape_segment(v) for v in values}) == len(set(values))


def test_same_input_same_key() -> None:
    assert key(source="ü/日本", batch="http-1") == key(source="ü/日本", batch="http-1")
    assert key(first="0") != key(first="1")


def test_long_values_are_bounded() -> None:
    assert len(escape_segment("日" * 1000)) <= MAX_SEGMENT_CHARS
    assert len(key(source="/" * 1000, event_type="/" * 1000).encode()) < 1024
