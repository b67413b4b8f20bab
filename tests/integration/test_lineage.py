"""``explain`` names the replays that re-emitted an event and the aggregate versions that
included it, on the embedded backend: events go in through the sink, a replay sends one entity's
day to the replay queue (its sent log lands in S3), the processor drains the queue into
aggregate versions, and ``GET /events/{id}`` and ``pik explain``'s code path report both."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from consumers.ingest import Submission
from consumers.processor import AggregateDefinition, Processor
from consumers.processor_loop import run_queue
from infra.clock import FixedClock
from infra.local import EmbeddedAws
from infra.replay_log import LOG_PREFIX
from pik.explain import explain
from pik.http import create_app
from pik.kit import Kit, build_kit
from producers.replay import parse_request
from schemas.codec import Provenance
from schemas.envelope import parse_body
from tests.conftest import fresh_settings

DAY = {"start_time": "2025-12-28T00:00:00Z", "end_time": "2025-12-29T00:00:00Z"}


def body(entity: str, minute: int, steps: int) -> bytes:
    return json.dumps(
        {
            "source": "demo",
            "event_type": "heartbeat",
            "entity_id": entity,
            "event_time": f"2025-12-28T10:{minute:02d}:00Z",
            "payload": {"steps": steps},
        }
    ).encode()


def ingest(kit: Kit, bodies: list[bytes]) -> list[str]:
    subs = [
        Submission(b, Provenance(f"t:{i}", "http"), parse_body(b), str(i))
        for i, b in enumerate(bodies)
    ]
    return [r.event_id for r in kit.sink.ingest(subs, label="t")]


def test_explain_lists_replays_and_aggregate_versions(
    aws_server: EmbeddedAws, clock: FixedClock
) -> None:
    kit = build_kit(fresh_settings(aws_server.endpoint_url), clock=clock)
    kit.bootstrap().run(demo_stream=False)
    ids = ingest(kit, [body("user_1", m, m) for m in range(5)] + [body("user_2", 0, 7)])
    target, other = ids[0], ids[5]
    service = kit.replay_service()
    processor = Processor(
        kit.index,
        kit.archive,
        kit.aggregates(),
        kit.clock,
        kit.metrics,
        definitions=(AggregateDefinition("daily_event_count"),),
    )
    replay_ids = []
    for n in range(2):  # two replays of user_1's day; a late event in between: version 2
        clock.advance(minutes=1)
        if n:
            ingest(kit, [body("user_1", 30, 1)])
        job = service.replay(parse_request({**DAY, "entity_id": "user_1"}), requester="t").job
        assert job.sent == 5 + n
        replay_ids.append(job.replay_id)
        summary = run_queue(processor, kit.replay_queue(), once=True, retry_base_s=0)
        assert summary.failed == 0
    dry = service.replay(
        parse_request({**DAY, "entity_id": "user_1", "dry_run": True}), requester="t"
    )
    assert dry.dry_run

    logs = kit.clients.s3().list_objects_v2(Bucket=kit.names.bucket, Prefix=f"{LOG_PREFIX}/")
    assert len(logs["Contents"]) == 2  # one block per replay: fewer messages than a checkpoint

    app = create_app(kit)
    with TestClient(app) as client:
        doc = client.get(f"/events/{target}").json()
        untouched = client.get(f"/events/{other}").json()
    app.state.committer.close()

    assert [r["replay_id"] for r in doc["replays"]] == replay_ids
    first = doc["replays"][0]
    assert (first["status"], first["sent"], first["deliveries"]) == ("COMPLETED", 1, [target])
    assert first["log_complete"] and first["request"]["entity_id"] == "user_1"
    versions = doc["aggregate_versions"]
    assert [(v["metric"], v["version"], v["value"]) for v in versions] == [
        ("daily_event_count", 1, 5),
        ("daily_event_count", 2, 6),
    ]
    assert [v["is_latest"] for v in versions] == [False, True]
    assert {v["replay_id"] for v in versions} <= set(replay_ids)
    assert untouched["replays"] == [] and untouched["aggregate_versions"] == []

    cli_doc = explain(target, kit.index, kit.reader, kit.lineage())  # `pik explain`'s path
    assert [r["replay_id"] for r in cli_doc["replays"]] == replay_ids
