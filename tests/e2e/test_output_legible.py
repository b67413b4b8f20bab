"""Every investigation command's human output, piped at 80 columns, against a small populated
embedded backend: event ids appear whole on one line and no cell is cut to ``…``."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from consumers.ingest import Submission
from infra.aggregates import AggregateVersion
from infra.clock import FixedClock
from infra.local import EmbeddedAws
from pik.cli.schemas import demo_registry_folder
from pik.kit import build_kit
from schemas.codec import Provenance
from schemas.envelope import parse_body
from tests.conftest import fresh_settings
from tests.e2e.conftest import base_env, run_pik

T0 = datetime(2025, 12, 28, tzinfo=UTC)
SOURCE = "legible_source_with_a_long_name"
WINDOW = ("--since", "2025-12-28T00:00:00Z", "--until", "2025-12-29T00:00:00Z")
DIFF_ENTITY = "customer-diff"
LATE_TIME = "2025-03-01T12:00:00Z"
HEX64 = re.compile(r"[0-9a-f]{64}")
HEX_RUN = re.compile(r"[0-9a-f]{20,}")


@pytest.fixture(scope="module")
def env(aws_server: EmbeddedAws) -> dict[str, str]:
    settings = fresh_settings(aws_server.endpoint_url)
    clock = FixedClock(T0 + timedelta(hours=3))
    kit = build_kit(settings, clock=clock)
    kit.bootstrap().run(demo_stream=False)
    for attempt in range(2):  # the second delivery of each event is a duplicate
        batch = []
        for n in range(4):
            at = T0 + timedelta(hours=1, minutes=10 * n)
            raw = json.dumps({"source": SOURCE, "event_type": "order_placed_event",
                              "entity_id": f"customer-with-a-long-identifier-{n}",
                              "event_time": at.isoformat(), "payload": {"n": n}}).encode()  # fmt: skip
            prov = Provenance(f"http:r{attempt}-{n}:0", "http", request_id=f"r{attempt}-{n}")
            batch.append(Submission(raw, prov, parse_body(raw), "0"))
        if attempt == 0:  # an event from March that arrives today: late data
            raw = json.dumps({"source": SOURCE, "event_type": "order_placed_event",
                              "entity_id": "march", "event_time": LATE_TIME,
                              "payload": {}}).encode()  # fmt: skip
            prov = Provenance("http:late:0", "http", request_id="late")
            batch.append(Submission(raw, prov, parse_body(raw), "0"))
        kit.sink.ingest(batch, label=f"attempt-{attempt}")
        clock.advance(seconds=600)
    return base_env(
        AWS_ENDPOINT_URL=aws_server.endpoint_url,
        PIK_EVENTS_TABLE=settings.events_table,
        PIK_BUCKET=settings.bucket,
        PIK_REPLAY_JOBS_TABLE=settings.replay_jobs_table,
        PIK_AGGREGATES_TABLE=settings.aggregates_table,
        COLUMNS="80",
    )


def _legible(text: str) -> list[str]:
    """The event ids printed; fails when one is broken or a cell is cut."""
    lines = text.splitlines()
    assert not [line for line in lines if line.rstrip().rstrip("│┃|").rstrip().endswith("…")]
    for line in lines:  # a long hex run that is not a whole id is an id broken over lines
        for run in HEX_RUN.findall(line):
            assert len(run) >= 64, f"broken id in {line!r}"
    return [m for line in lines for m in HEX64.findall(line)]


def _event_id(env: dict[str, str]) -> str:
    done = run_pik("lag", "--source", SOURCE, *WINDOW, "--json", env=env)
    assert done.returncode == 0, done.stderr
    event_id: str = json.loads(done.stdout)["latest"][0]["event_id"]
    return event_id


def test_lag_prints_whole_ids_that_explain_accepts(env: dict[str, str]) -> None:
    done = run_pik("lag", "--source", SOURCE, *WINDOW, env=env)
    assert done.returncode == 0, done.stderr
    ids = _legible(done.stdout.decode())
    assert _event_id(env) in ids
    explained = run_pik("explain", ids[0], env=env)
    assert explained.returncode == 0, explained.stderr
    assert ids[0] in _legible(explained.stdout.decode())


@pytest.mark.parametrize(
    "args",
    [
        ("audit", "--source", SOURCE, *WINDOW),
        ("gaps", "--source", SOURCE, *WINDOW),
        ("replays", "list"),
        ("schemas", "list", "--registry", str(demo_registry_folder())),
    ],
    ids=lambda a: a[0] if isinstance(a, tuple) else str(a),
)
def test_investigation_commands_are_legible_piped_at_80_columns(
    env: dict[str, str], args: tuple[str, ...]
) -> None:
    done = run_pik(*args, env=env)
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    _legible(text)
    assert SOURCE in text or args[0] in ("replays", "schemas")


def test_explain_keeps_archive_keys_and_provenance_on_one_line(env: dict[str, str]) -> None:
    event_id = _event_id(env)
    done = run_pik("explain", event_id, env=env)
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    assert _legible(text).count(event_id) >= 1
    doc = json.loads(run_pik("explain", event_id, "--json", env=env).stdout)
    for delivery in doc["deliveries"]:
        key = delivery["archive"]["key"]
        assert any(key in line for line in text.splitlines()), key


def test_lag_by_arrival_finds_what_arrived_late_in_the_window(env: dict[str, str]) -> None:
    by_event = run_pik("lag", "--source", SOURCE, *WINDOW, "--json", env=env)
    by_arrival = run_pik("lag", "--source", SOURCE, *WINDOW, "--by", "arrival", "--json", env=env)
    assert by_event.returncode == 0 and by_arrival.returncode == 0, by_arrival.stderr
    event_doc, arrival_doc = json.loads(by_event.stdout), json.loads(by_arrival.stdout)
    assert (event_doc["axis"], arrival_doc["axis"]) == ("event", "arrival")
    assert "march" not in [e["entity_id"] for e in event_doc["latest"]]
    assert arrival_doc["latest"][0]["entity_id"] == "march"
    assert arrival_doc["latest"][0]["event_time"].startswith("2025-03-01")
    assert {g["day"] for g in arrival_doc["by_day"]} == {"2025-03-01", "2025-12-28"}
    assert [g["count"] for g in arrival_doc["overall"]] == [5]  # first deliveries only


def _version(metric: str, version: int, value: float, ids: list[str]) -> AggregateVersion:
    return AggregateVersion(
        entity_id=DIFF_ENTITY,
        day="2025-12-28",
        metric=metric,
        version=version,
        value=value,
        input_hash=f"{metric}{version}",
        input_count=len(ids),
        sample_event_ids=ids,
        computed_at="2025-12-28T04:00:00Z",
        definition={},
        previous_version=version - 1 if version > 1 else None,
        input_event_ids=ids,
    )


def test_aggregates_diff_compares_per_metric_and_names_what_changed(
    env: dict[str, str], aws_server: EmbeddedAws
) -> None:
    settings = fresh_settings(
        aws_server.endpoint_url,
        events_table=env["PIK_EVENTS_TABLE"],
        bucket=env["PIK_BUCKET"],
        aggregates_table=env["PIK_AGGREGATES_TABLE"],
    )
    store = build_kit(settings).aggregates()
    store.put(_version("order_count", 1, 1, ["a" * 64]))
    store.put(_version("order_count", 2, 2, ["a" * 64, "b" * 64]))
    store.put(_version("order_total", 1, 9.5, ["a" * 64]))  # one version only
    done = run_pik("aggregates", "diff", DIFF_ENTITY, "2025-12-28", env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert "changed: order_count" in lines
    assert "one version only (unchanged): order_total v1" in lines
    assert f"  + {'b' * 64}" in lines
