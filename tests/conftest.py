"""Shared fixtures: one embedded AWS per test worker, fresh resource names per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from infra.clock import FixedClock
from infra.local import EmbeddedAws
from pik.kit import Kit, build_kit
from pik.settings import Settings


@pytest.fixture(scope="session")
def aws_server() -> Iterator[EmbeddedAws]:
    """moto's server on a free loopback port, spoken to over HTTP (never in-process patches)."""
    with EmbeddedAws(port=0) as server:
        yield server


def fresh_settings(endpoint_url: str, **overrides: object) -> Settings:
    """Settings whose resource names are unique to one test, so tests never share state."""
    tag = uuid.uuid4().hex[:10]
    names = {
        "bucket": f"pik-raw-{tag}",
        "events_table": f"pik-events-{tag}",
        "leases_table": f"pik-leases-{tag}",
        "replay_jobs_table": f"pik-replay-jobs-{tag}",
        "aggregates_table": f"pik-aggregates-{tag}",
        "replay_queue": f"pik-replay-{tag}",
        "replay_dlq": f"pik-replay-dlq-{tag}",
        "demo_stream": f"pik-demo-{tag}",
    }
    return Settings(endpoint_url=endpoint_url, region="us-east-1", **{**names, **overrides})


@pytest.fixture
def settings(aws_server: EmbeddedAws) -> Settings:
    return fresh_settings(aws_server.endpoint_url)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2025, 12, 29, 1, 0, 0, tzinfo=UTC))


@pytest.fixture
def kit(settings: Settings, clock: FixedClock) -> Kit:
    """A bootstrapped kit on the embedded backend with a fixed clock."""
    built = build_kit(settings, clock=clock)
    built.bootstrap().run(demo_stream=False)
    return built
