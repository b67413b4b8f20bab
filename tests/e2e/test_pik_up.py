"""`pik up`, `pik local`, `pik bootstrap`, `pik ingest`, `pik explain`, `pik demo` as a user runs them."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import boto3

from tests.e2e.conftest import base_env, free_port, port_open, run_pik, running

GUIDE_CURL = (
    'curl -s -X POST "$API_URL/ingest" -H "Content-Type: application/json" -d '
    '\'{"source":"demo","event_type":"heartbeat","entity_id":"user_123",'
    '"event_time":"2025-12-28T23:59:59Z","payload":{"steps":10}}\''
)


def curl(api_url: str) -> dict:
    out = subprocess.run(
        ["bash", "-c", GUIDE_CURL],
        env={"API_URL": api_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=True,
        timeout=30,
    )
    return json.loads(out.stdout)


def test_up_answers_the_user_guide_curl_and_stops_cleanly(tmp_path: Path) -> None:
    api, aws = free_port(), free_port()
    with running(
        "up",
        "--port",
        str(api),
        "--aws-port",
        str(aws),
        env=base_env(),
        ready_url=f"http://127.0.0.1:{api}/healthz",
    ) as proc:
        first = curl(f"http://127.0.0.1:{api}")
        again = curl(f"http://127.0.0.1:{api}")
        assert first["status"] == "ACCEPTED"
        assert again["status"] == "DUPLICATE"
        assert again["event_id"] == first["event_id"]

        endpoint = base_env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{aws}")
        explained = run_pik("explain", first["event_id"], "--json", env=endpoint)
        assert explained.returncode == 0, explained.stderr
        doc = json.loads(explained.stdout)
        assert doc["duplicates"] == 1
        assert json.loads(doc["event"]["record"]["raw"])["payload"] == {"steps": 10}

        events = tmp_path / "events.ndjson"
        good = {
            "source": "file",
            "event_type": "t",
            "entity_id": "e1",
            "event_time": "2025-12-28T10:00:00Z",
            "payload": {},
        }
        events.write_text("\n".join([json.dumps(good), json.dumps(good), "{broken", ""]) + "\n")
        ingested = run_pik("ingest", str(events), "--json", env=endpoint)
        assert ingested.returncode == 0, ingested.stderr
        summary = json.loads(ingested.stdout)
        assert (summary["accepted"], summary["duplicate"], summary["rejected"]) == (1, 1, 1)

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    assert not port_open(api)
    assert not port_open(aws)


def test_local_then_bootstrap_json_is_idempotent() -> None:
    aws = free_port()
    endpoint = f"http://127.0.0.1:{aws}"
    with running("local", "--port", str(aws), env=base_env(), ready_url=f"{endpoint}/moto-api/"):
        env = base_env(AWS_ENDPOINT_URL=endpoint)
        first = run_pik("bootstrap", "--json", env=env)
        second = run_pik("bootstrap", "--json", env=env)
        assert first.returncode == 0, first.stderr
        doc, doc2 = json.loads(first.stdout), json.loads(second.stdout)
        assert doc2["created"] == []
        assert len(doc["created"]) == 8
        for key in ("bucket", "events_table", "replay_queue_url", "replay_dlq_url", "demo_stream"):
            assert doc[key] == doc2[key]


def test_state_survives_a_restart_with_a_data_dir(tmp_path: Path) -> None:
    api, aws = free_port(), free_port()
    args = ("up", "--port", str(api), "--aws-port", str(aws), "--data-dir", str(tmp_path))
    ready = f"http://127.0.0.1:{api}/healthz"
    with running(*args, env=base_env(), ready_url=ready):
        event_id = curl(f"http://127.0.0.1:{api}")["event_id"]
    with running(*args, env=base_env(), ready_url=ready):
        assert curl(f"http://127.0.0.1:{api}")["status"] == "DUPLICATE"
        env = base_env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{aws}")
        doc = json.loads(run_pik("explain", event_id, "--json", env=env).stdout)
        assert doc["event"]["record"]["entity_id"] == "user_123"


def test_demo_refuses_a_dry_run_in_one_line() -> None:
    # the whole demo, --json and --out included, runs in tests/integration/test_demo.py
    result = run_pik("demo", "--json", env=base_env(DRY_RUN="true"))
    assert result.returncode == 2
    [line] = result.stderr.decode().strip().splitlines()
    assert "DRY_RUN" in line
    assert result.stdout == b""


def test_dry_run_ingest_writes_nothing(tmp_path: Path) -> None:
    aws = free_port()
    endpoint = f"http://127.0.0.1:{aws}"
    with running("local", "--port", str(aws), env=base_env(), ready_url=f"{endpoint}/moto-api/"):
        env = base_env(AWS_ENDPOINT_URL=endpoint)
        assert run_pik("bootstrap", env=env).returncode == 0
        events = tmp_path / "e.ndjson"
        events.write_text(
            '{"source":"a","event_type":"b","entity_id":"c",'
            '"event_time":"2025-01-01T00:00:00Z","payload":{}}\n'
        )
        dry = run_pik("ingest", str(events), "--json", env={**env, "DRY_RUN": "true"})
        assert dry.returncode == 0, dry.stderr
        assert json.loads(dry.stdout)["dry_run"] is True
        lines = run_pik("ingest", str(events), "--results", env={**env, "DRY_RUN": "true"})
        [outcome] = [json.loads(line) for line in lines.stdout.splitlines()]
        assert (outcome["line"], outcome["status"]) == (1, "ACCEPTED")
        assert len(outcome["event_id"]) == 64
        real = json.loads(run_pik("ingest", str(events), "--json", env=env).stdout)
        assert real["accepted"] == 1  # the dry run left no trace to collide with


def test_errors_are_one_line_with_an_exit_code(tmp_path: Path) -> None:
    missing = run_pik("ingest", str(tmp_path / "nope.ndjson"))
    assert missing.returncode == 2
    assert b"cannot read" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    unknown = run_pik("explain", "0" * 64, env=base_env(AWS_ENDPOINT_URL="http://127.0.0.1:9"))
    assert unknown.returncode == 1
    assert b"error:" in unknown.stderr
    assert b"Traceback" not in unknown.stderr


def test_up_taps_the_configured_streams(tmp_path: Path) -> None:
    api, aws = free_port(), free_port()
    binding = run_pik("produce", "--stream", "pik-demo", "--print-binding")
    assert binding.returncode == 0, binding.stderr
    config = tmp_path / "pik.toml"
    config.write_bytes(binding.stdout)
    env = base_env(PIK_CONFIG=str(config))
    with running(
        "up",
        "--port",
        str(api),
        "--aws-port",
        str(aws),
        env=env,
        ready_url=f"http://127.0.0.1:{api}/healthz",
    ):
        endpoint = base_env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{aws}")
        produced = run_pik(
            "produce", "--stream", "pik-demo", "--count", "40", "--json", env=endpoint
        )
        assert produced.returncode == 0, produced.stderr
        deadline = time.monotonic() + 60
        accepted = 0
        while time.monotonic() < deadline and accepted < 40:
            audit = run_pik(
                "audit", "--source", "checkout", "--since", "2d", "--json", env=endpoint
            )
            if audit.returncode == 0:
                accepted = json.loads(audit.stdout)["totals"]["accepted"]
            time.sleep(1)
        assert accepted == 40


def _metrics(api_url: str) -> str:
    with urllib.request.urlopen(f"{api_url}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


def test_up_metrics_show_the_taps_lag_and_the_ingest_counts_of_tap_and_api(
    tmp_path: Path,
) -> None:
    """One ``/metrics`` for the whole ``pik up`` process: the tap's gauge and counters next to
    the HTTP API's, not an empty page from a second set of metrics."""
    api, aws = free_port(), free_port()
    config = tmp_path / "pik.toml"
    config.write_text('[[tap]]\nstream = "pik-demo"\n')
    api_url = f"http://127.0.0.1:{api}"
    with running(
        "up", "--port", str(api), "--aws-port", str(aws),
        env=base_env(PIK_CONFIG=str(config)), ready_url=f"{api_url}/healthz",
    ):  # fmt: skip
        kinesis = boto3.client(
            "kinesis",
            endpoint_url=f"http://127.0.0.1:{aws}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for n in range(3):
            record = {"source": "tapped", "event_type": "tick", "entity_id": f"e{n}",
                      "event_time": "2025-12-28T10:00:00Z", "payload": {"n": n}}  # fmt: skip
            kinesis.put_record(
                StreamName="pik-demo", Data=json.dumps(record).encode(), PartitionKey=f"e{n}"
            )
        assert curl(api_url)["status"] == "ACCEPTED"  # source "demo", through the HTTP API
        deadline, text = time.monotonic() + 30, ""
        while time.monotonic() < deadline:
            text = _metrics(api_url)
            if 'IngestCount{event_type="tick",source="tapped"} 3' in text:
                break
            time.sleep(0.3)
        assert 'IngestCount{event_type="tick",source="tapped"} 3' in text, text
        assert 'IngestCount{event_type="heartbeat",source="demo"} 1' in text, text
        assert re.search(r'TapMillisBehindLatest\{shard="[^"]+",stream="pik-demo"\} \d+', text), (
            text
        )
        assert "IngestLagMs_count" in text
