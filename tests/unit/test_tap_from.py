"""``pik tap --from`` takes the time forms every other command takes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from infra.errors import ConfigError
from infra.kinesis import StartKind
from pik.cli.tap import _start_at


def test_a_date_is_midnight_utc() -> None:
    start = _start_at("2026-12-02")
    assert (start.kind, start.timestamp) == (
        StartKind.AT_TIMESTAMP,
        datetime(2026, 12, 2, tzinfo=UTC),
    )


def test_a_duration_is_that_long_ago() -> None:
    start = _start_at("36h")
    assert start.timestamp is not None
    ago = datetime.now(UTC) - start.timestamp
    assert timedelta(hours=36) <= ago < timedelta(hours=36, minutes=1)


@pytest.mark.parametrize("text", ["trim_horizon", "LATEST", "2026-12-02T05:00:00Z"])
def test_the_stream_positions_and_iso_times_still_work(text: str) -> None:
    assert _start_at(text).kind in (
        StartKind.TRIM_HORIZON,
        StartKind.LATEST,
        StartKind.AT_TIMESTAMP,
    )


def test_an_unreadable_time_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="yesterday"):
        _start_at("yesterday")
