"""The tap on a faithful Kinesis (npm kinesis-local, installed by tests/emulators.py): crashes
and faults while the stream is resharded, which moto cannot show (it keeps writing to closed
parents, never ends them and returns no ``ChildShards``). Only Kinesis is on kinesis-local; the
archive, index and leases stay on the suite's embedded moto server."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.local import EmbeddedAws
from tests.reliability.conftest import CheckFigures
from tests.reliability.crash import tap_crash
from tests.reliability.fault_runs import tap_under_faults
from tests.reliability.support import KINESIS_LOCAL

pytestmark = pytest.mark.reliability


def test_pik_tap_killed_at_random_while_the_stream_splits_and_merges(
    aws_server: EmbeddedAws, kinesis_endpoint: str, tmp_path: Path, check_figures: CheckFigures
) -> None:
    figures = tap_crash(
        aws_server.endpoint_url,
        records=300,
        kills=3,
        workdir=tmp_path,
        seed=31,
        kinesis_endpoint=kinesis_endpoint,
        reshard=True,
        write_s=10.0,
    )
    check_figures(figures)
    assert figures.backend == KINESIS_LOCAL
    assert figures.notes["kills"] >= 3
    assert figures.notes["indexed_before_the_final_run"] > 0  # the killed taps did read
    assert len(figures.notes["shards"]) == 5  # 2, a split (+2), a merge (+1)
    assert figures.notes["producer_retries"] > 0


def test_tap_drain_with_kinesis_faults_across_a_split(
    aws_server: EmbeddedAws, kinesis_endpoint: str, check_figures: CheckFigures
) -> None:
    figures = tap_under_faults(
        aws_server.endpoint_url,
        records=300,
        rate=0.3,
        seed=32,
        kinesis_endpoint=kinesis_endpoint,
        reshard=True,
        get_limit=25,
    )
    check_figures(figures)
    assert figures.notes["faults"]["by_service"]["kinesis"]["injected"] > 0
    assert len(figures.notes["shards"]) == 4  # 2 and a split's children
