"""A backend outage under `pik up`: the composition `pik up` runs (supervised taps from
``start_taps`` and the HTTP app with their states on ``/healthz``) while every Kinesis, S3 and
DynamoDB call fails (``infra/faults.py`` at rate 1: 5xx and connection resets, retries 1).
The tap restarts by itself once the backend is back, from its checkpoints: every record is
archived exactly once, and ``/healthz`` went degraded (503) and then ok (200)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from consumers.tap.binding import binding_from_table
from infra.faults import FaultInjector, FaultKind, FaultPlan
from infra.local import EmbeddedAws
from pik.http import create_app
from pik.kit import Kit
from pik.supervisor import Backoff
from pik.taps import tap_options
from tests.reliability.conftest import CheckFigures
from tests.reliability.reshard import wait_active
from tests.reliability.support import (
    Figures,
    audit,
    identity_of,
    kit_with,
    known_event,
    settings_for,
    timed,
)

pytestmark = pytest.mark.reliability

OUTAGE = FaultPlan(
    rate=1.0,
    kinds=(FaultKind.SERVER_ERROR, FaultKind.CONNECTION_RESET),
    services=frozenset({"kinesis", "s3", "dynamodb"}),
    seed=21,
)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def put(kit: Kit, stream: str, bodies: list[bytes]) -> None:
    records = [{"Data": b, "PartitionKey": f"pk-{n % 5}"} for n, b in enumerate(bodies)]
    out = kit.clients.kinesis().put_records(StreamName=stream, Records=records)
    assert out["FailedRecordCount"] == 0


def test_the_tap_resumes_by_itself_after_a_backend_outage(
    aws_server: EmbeddedAws, check_figures: CheckFigures
) -> None:
    figures = Figures("outage: pik up's tap through a full backend outage")
    settings = settings_for(aws_server.endpoint_url)
    clean = kit_with(settings)
    clean.bootstrap().run(demo_stream=False)
    stream = f"outage-{uuid.uuid4().hex[:8]}"
    clean.clients.kinesis().create_stream(StreamName=stream, ShardCount=2)
    wait_active(clean.clients.kinesis(), stream)
    run = uuid.uuid4().hex[:8]
    before = [known_event(run, n) for n in range(100)]
    during = [known_event(run, n) for n in range(100, 200)]
    injector = FaultInjector(OUTAGE)
    faulty = kit_with(settings, max_attempts=1, injector=injector)
    options = tap_options(lease_ms=2_000)
    seen: list[int] = []
    with timed(figures):
        with injector.paused():
            put(clean, stream, before)
            taps = faulty.start_taps(
                [binding_from_table({"stream": stream})],
                options=options,
                backoff=Backoff(base_s=0.2, cap_s=1.0, healthy_after_s=5),
            )
            app = create_app(faulty, health=taps)
            client = TestClient(app)

            def health() -> int:
                answer = client.get("/healthz")
                seen.append(answer.status_code)
                return answer.status_code

            try:
                wait_for(
                    "the first records",
                    lambda: taps.workers[0].summary.totals()["accepted"] >= len(before),
                )
                assert health() == 200
            except BaseException:
                taps.stop()
                raise
        try:
            put(clean, stream, during)  # the clean client: producers are not in the outage
            wait_for("/healthz degraded", lambda: health() == 503)
            degraded = client.get("/healthz").json()
            with injector.paused():
                wait_for("/healthz ok again", lambda: health() == 200)
                wait_for(
                    "every record",
                    lambda: taps.workers[0].summary.totals()["accepted"] >= 200,
                )
                states = taps.states()
        finally:
            with injector.paused():
                taps.stop()
                app.state.committer.close()
        with injector.paused():
            result = audit(clean, {identity_of(b) for b in before + during})
    restarts = taps.supervisor.components[f"tap:{stream}"].restarts
    figures.tried = len(before) + len(during)
    figures.survived = result.indexed_once - len(result.duplicates_indexed)
    figures.lost = result.lost
    if result.rollups_off:
        figures.fail(f"rollups differ from a recount of the archive: {result.rollups_off[:3]}")
    if result.archive_copies.keys() - {1}:
        figures.fail(f"archived more than once: {dict(result.archive_copies)}")
    if degraded["status"] != "degraded" or degraded["components"]["api"] != "ok":
        figures.fail(f"/healthz during the outage: {degraded}")
    if states != {f"tap:{stream}": "ok"}:
        figures.fail(f"states after the outage: {states}")
    if restarts < 1:
        figures.fail("the tap was never restarted")
    figures.notes.update(
        {
            "faults": injector.report(),
            "tap_restarts": restarts,
            "healthz_codes": sorted(set(seen)),
            "audit": result.to_json(),
        }
    )
    check_figures(figures)
