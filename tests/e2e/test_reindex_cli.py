"""``pik reindex`` as a user runs it: into a fresh table, from the archive alone."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from consumers.ingest import Submission
from infra.clock import FixedClock
from infra.local import EmbeddedAws
from pik.kit import build_kit
from schemas.codec import Provenance
from schemas.envelope import parse_body
from tests.conftest import fresh_settings
from tests.e2e.conftest import base_env, run_pik

T0 = datetime(2025, 12, 28, 5, tzinfo=UTC)


def test_reindex_into_a_new_table_then_again_changes_nothing(aws_server: EmbeddedAws) -> None:
    settings = fresh_settings(aws_server.endpoint_url)
    kit = build_kit(settings, clock=FixedClock(T0))
    kit.bootstrap().run(demo_stream=False)
    raws = [
        json.dumps({"source": "shop", "event_type": "order", "entity_id": f"c{n}",
                    "event_time": "2025-12-28T04:00:00Z", "payload": {"n": n}}).encode()
        for n in range(3)
    ]  # fmt: skip
    subs = [
        Submission(
            raw, Provenance(f"http:r{n}:0", "http", request_id=f"r{n}"), parse_body(raw), "0"
        )
        for n, raw in enumerate([*raws, raws[0]])  # the last one is a producer retry
    ]
    kit.sink.ingest(subs, label="seed")
    env = base_env(
        AWS_ENDPOINT_URL=aws_server.endpoint_url,
        PIK_EVENTS_TABLE=settings.events_table + "-new",
        PIK_BUCKET=settings.bucket,
    )
    assert run_pik("bootstrap", env=env).returncode == 0
    dry = run_pik("reindex", "--json", env={**env, "DRY_RUN": "true"})
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) == {"dry_run": True, "hours": 1, "files": 1}
    first = run_pik("reindex", "--source", "shop", "--json", env=env)
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert (doc["claimed"], doc["accepted"], doc["duplicates"]) == (3, 3, 1)
    second = json.loads(run_pik("reindex", "--json", env=env).stdout)
    assert (second["claimed"], second["accepted"]) == (0, 3)
    audit = run_pik("audit", "--source", "shop", "--since", "2025-12-28", "--until",
                    "2025-12-29", "--json", env=env)  # fmt: skip
    assert audit.returncode == 0, audit.stderr
    totals = json.loads(audit.stdout)["totals"]
    assert (totals["accepted"], totals["duplicate"]) == (3, 1)
    bad = run_pik("reindex", "--since", "yesterday", env=env)
    assert bad.returncode == 2 and b"yesterday" in bad.stderr
