"""Load held: ``bench/loadgen.py`` (a second process) drives ``pik serve`` on loopback for a few
seconds, one event per request and in batches; no request fails, every acknowledged event is
indexed, and the server's memory is sampled (the long runs are in bench/reliability.py)."""

from __future__ import annotations

import pytest

from infra.local import EmbeddedAws
from tests.reliability.conftest import CheckFigures
from tests.reliability.load import load_run

pytestmark = pytest.mark.reliability


@pytest.mark.parametrize(("batch", "duration"), [(0, 8.0), (50, 5.0)])
def test_sustained_ingest_load_loses_nothing(
    aws_server: EmbeddedAws, batch: int, duration: float, check_figures: CheckFigures
) -> None:
    figures = load_run(aws_server.endpoint_url, duration=duration, concurrency=6, batch=batch)
    check_figures(figures)
    assert figures.notes["requests"] > 0
    assert figures.notes["server_rss"]["max_mib"] is not None
