"""Crashes survived: ``pik serve`` and ``pik process --once`` SIGKILLed at random moments while
work flows (``pik tap``'s crash tests are tests/integration/test_tap_crash.py on moto and
test_kinesis_local.py here, with resharding). The subprocesses use the suite's embedded AWS
over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.local import EmbeddedAws
from tests.reliability.conftest import CheckFigures
from tests.reliability.crash import processor_crash, serve_crash

pytestmark = pytest.mark.reliability


def test_pik_serve_killed_at_random_indexes_each_event_exactly_once(
    aws_server: EmbeddedAws, check_figures: CheckFigures
) -> None:
    figures = serve_crash(aws_server.endpoint_url, events=120, kills=3, seed=21)
    check_figures(figures)
    assert figures.notes["kills"] == 3


def test_pik_process_killed_mid_drain_leaves_recomputable_aggregates(
    aws_server: EmbeddedAws, tmp_path: Path, check_figures: CheckFigures
) -> None:
    # A killed run's batch comes back after --visibility-timeout 3: well inside the deadline,
    # which the default (120 s) would miss.
    figures = processor_crash(
        aws_server.endpoint_url,
        events=30,
        kills=2,
        workdir=tmp_path,
        seed=22,
        visibility_s=3,
        deadline_s=60,
    )
    check_figures(figures)
    assert figures.notes["kills"] == 2
