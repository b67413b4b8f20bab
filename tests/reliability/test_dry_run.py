"""DRY_RUN=true writes, sends and consumes nothing, in every command and route: the backend is
counted (every S3 object version, every item of every table, every queue's visible and
in-flight messages, every record on the stream) before and after each, and must not change.

Each command runs as the user runs it (a ``pik`` subprocess on the embedded backend); the
routes run through the HTTP app of a DRY_RUN kit."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consumers.ingest import Submission
from infra.local import EmbeddedAws
from pik.http import create_app
from pik.kit import Kit, build_kit
from producers.replay_request import ReplayRequest
from schemas.codec import Provenance
from schemas.envelope import parse_body
from tests.conftest import fresh_settings
from tests.reliability.support import env_for

pytestmark = pytest.mark.reliability

PIK = str(Path(sys.executable).with_name("pik"))
WINDOW = ("--start", "2025-12-28T00:00:00Z", "--end", "2025-12-29T00:00:00Z", "--source", "dry")


def _event(n: int) -> bytes:
    return json.dumps(
        {
            "source": "dry",
            "event_type": "tick",
            "entity_id": f"e{n % 3}",
            "event_time": f"2025-12-28T{10 + n // 60:02d}:{n % 60:02d}:00Z",
            "payload": {"n": n},
        }
    ).encode()


def backend_state(kit: Kit) -> dict[str, Any]:
    """Everything a write, send or receive could change."""
    s3, ddb, sqs, kinesis = (
        kit.clients.s3(),
        kit.clients.dynamodb(),
        kit.clients.sqs(),
        kit.clients.kinesis(),
    )
    state: dict[str, Any] = {}
    versions = s3.list_object_versions(Bucket=kit.names.bucket)
    state["s3"] = sorted(
        (v["Key"], v["VersionId"])
        for v in versions.get("Versions", []) + versions.get("DeleteMarkers", [])
    )
    for table in (
        kit.names.events_table,
        kit.names.leases_table,
        kit.names.replay_jobs_table,
        kit.names.aggregates_table,
    ):
        items = ddb.get_paginator("scan").paginate(TableName=table).build_full_result()["Items"]
        state[table] = sorted(json.dumps(i, sort_keys=True, default=bytes.hex) for i in items)
    for queue in (kit.names.replay_queue, kit.names.replay_dlq):
        url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        attrs = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        state[queue] = attrs
    stream = kit.names.demo_stream
    records = 0
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        it = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records += len(kinesis.get_records(ShardIterator=it, Limit=10_000)["Records"])
    state[stream] = records
    return state


@pytest.fixture(scope="module")
def world(aws_server: EmbeddedAws, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A backend with events, a finished replay (its messages waiting on the queue), a replay
    stopped half-way (to resume or cancel) and records on the demo stream."""
    settings = fresh_settings(aws_server.endpoint_url)
    kit = build_kit(settings)
    kit.bootstrap().run()
    subs = [
        Submission(
            _event(n),
            Provenance(f"dry:{n}", "http", request_id="dry"),
            parse_body(_event(n)),
            str(n),
        )
        for n in range(12)
    ]
    kit.sink.ingest(subs, label="dry-seed")
    service = kit.replay_service()
    window = {
        "start_time": datetime(2025, 12, 28, tzinfo=UTC),
        "end_time": datetime(2025, 12, 29, tzinfo=UTC),
        "source": "dry",
    }
    service.replay(ReplayRequest(**window), requester="test")
    stopped = service.replay(
        ReplayRequest(**window, rate_limit=1000), requester="test", should_stop=lambda: True
    ).job
    produced = subprocess.run(
        [PIK, "produce", "--stream", settings.demo_stream, "--count", "20", "--seed", "1"],
        env=env_for(settings),
        capture_output=True,
        timeout=120,
    )
    assert produced.returncode == 0, produced.stderr
    folder = tmp_path_factory.mktemp("dry")
    (folder / "events.ndjson").write_bytes(b"\n".join(_event(n) for n in range(30, 40)))
    return {"settings": settings, "kit": kit, "stopped": stopped.replay_id, "folder": folder}


COMMANDS = [
    ("bootstrap",),
    ("ingest", "{folder}/events.ndjson"),
    ("ingest", "-"),
    ("replay", *WINDOW),
    ("replay", *WINDOW, "--with-payload", "--include-duplicates"),
    ("replays", "resume", "{stopped}"),
    ("replays", "cancel", "{stopped}"),
    ("process", "--once"),
    ("tap", "--stream", "{stream}", "--once"),
    ("produce", "--stream", "{stream}", "--count", "5"),
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_no_command_changes_anything_in_a_dry_run(
    world: dict[str, Any], args: tuple[str, ...]
) -> None:
    settings, kit = world["settings"], world["kit"]
    values = {
        "folder": world["folder"],
        "stopped": world["stopped"],
        "stream": settings.demo_stream,
    }
    argv = [a.format(**values) for a in args]
    before = backend_state(kit)
    assert before[settings.demo_stream] == 20 and before[settings.replay_queue]
    done = subprocess.run(
        [PIK, *argv],
        env=env_for(settings, DRY_RUN="true"),
        input=_event(50),
        capture_output=True,
        timeout=120,
    )
    # Done as a dry run (0), or refused, saying why (process and produce have nothing to show).
    refused = done.returncode != 0 and b"DRY_RUN" in done.stderr
    assert done.returncode == 0 or refused, (argv, done.returncode, done.stderr[-2000:])
    assert b"Traceback" not in done.stderr
    assert backend_state(kit) == before, (argv, done.stdout[-1000:])


def test_no_route_changes_anything_in_a_dry_run(world: dict[str, Any]) -> None:
    settings, kit = world["settings"], world["kit"]
    dry = build_kit(settings.model_copy(update={"dry_run": True}))
    app = create_app(dry)
    before = backend_state(kit)
    with TestClient(app) as client:
        answers = [
            client.post("/ingest", content=_event(60)),
            client.post("/ingest/batch", content=b"\n".join([_event(61), _event(62), b"oops"])),
            client.post("/ingest", content=b"x" * 1_000_000),
            client.post(
                "/replay",
                json={
                    "start_time": "2025-12-28T00:00:00Z",
                    "end_time": "2025-12-29T00:00:00Z",
                    "source": "dry",
                },
            ),
            client.post(f"/replays/{world['stopped']}/cancel"),
        ]
    app.state.committer.close()
    assert [a.status_code < 500 for a in answers] == [True] * len(answers), [
        (a.status_code, a.text[:200]) for a in answers
    ]
    assert answers[0].json()["status"] == "ACCEPTED"  # it says what it would do
    assert backend_state(kit) == before
