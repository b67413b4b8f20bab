"""Faults survived: with ~15 % of S3/DynamoDB (and SQS) attempts failing — throttling, 5xx,
read timeouts after the write was applied, connection resets — nothing is lost or counted twice.

Two retry budgets: the kit's own (botocore standard mode, 8 retries), under which no fault
should reach the HTTP client, and one retry only, so faults escape to the HTTP layer (503) and
the client's retry of the same request must be absorbed as a redelivery.
"""

from __future__ import annotations

import pytest

from infra.local import EmbeddedAws
from tests.reliability.conftest import CheckFigures
from tests.reliability.fault_runs import (
    http_ingest_under_faults,
    processor_under_faults,
    tap_under_faults,
)

pytestmark = pytest.mark.reliability


def test_http_ingest_with_the_kits_retries_loses_nothing(
    aws_server: EmbeddedAws, check_figures: CheckFigures
) -> None:
    figures = http_ingest_under_faults(aws_server.endpoint_url, events=150, rate=0.15, seed=11)
    check_figures(figures)
    assert figures.notes["faults"]["injected"] > 0
    assert figures.notes["audit"]["archive_copies"] == {"1": 150}  # nothing reached the client


def test_http_ingest_when_faults_escape_the_retries_loses_nothing(
    aws_server: EmbeddedAws, check_figures: CheckFigures
) -> None:
    figures = http_ingest_under_faults(
        aws_server.endpoint_url, events=150, rate=0.3, seed=12, max_attempts=1
    )
    check_figures(figures)
    assert figures.notes["http_answers"].get("503", 0) > 0, figures.notes  # they did escape


def test_processor_drain_with_faults_matches_a_recomputation(
    aws_server: EmbeddedAws, check_figures: CheckFigures
) -> None:
    figures = processor_under_faults(aws_server.endpoint_url, events=30, rate=0.15, seed=13)
    check_figures(figures)
    assert figures.notes["faults"]["injected"] > 0


def test_tap_drain_with_kinesis_faults_indexes_each_record_once(
    aws_server: EmbeddedAws, check_figures: CheckFigures
) -> None:
    figures = tap_under_faults(aws_server.endpoint_url, records=300, rate=0.3, seed=14)
    check_figures(figures)
    assert figures.notes["faults"]["injected"] > 0
