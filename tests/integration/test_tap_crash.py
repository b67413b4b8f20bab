"""The crash test: a `pik tap` subprocess is SIGKILLed again and again while a producer writes;
afterwards every produced record is in the index exactly once, and every producer retry is the
only kind of duplicate (no redelivery after a kill counts as one). The subprocesses talk to the
suite's embedded moto server over HTTP."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from consumers.tap.decode import RecordDecoder, StreamRecord
from infra.clock import SystemClock
from infra.kinesis_boto import BotoKinesis
from pik.config import load_config
from pik.kit import Kit
from pik.settings import Settings
from producers.produce import BINDING_TOML, Produced, Producer, ProduceSpec
from schemas.envelope import Event
from schemas.identity import event_id
from tests.e2e.conftest import base_env

PIK = str(Path(sys.executable).with_name("pik"))


def test_sigkill_at_any_moment_loses_nothing_and_makes_no_false_duplicates(
    kit: Kit, settings: Settings, tmp_path: Path
) -> None:
    stream = f"existing-{uuid.uuid4().hex[:8]}"
    kinesis = kit.clients.kinesis()
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})
    config = tmp_path / "pik.toml"
    config.write_text(BINDING_TOML.format(stream=stream))
    env = base_env(
        AWS_ENDPOINT_URL=settings.endpoint_url or "",
        PIK_CONFIG=str(config),
        PIK_BUCKET=settings.bucket,
        PIK_EVENTS_TABLE=settings.events_table,
        PIK_LEASES_TABLE=settings.leases_table,
    )
    tap = [PIK, "tap", "--stream", stream, "--lease-seconds", "1", "--json"]

    produced: list[Produced] = []
    spec = ProduceSpec(count=300, rate=120, duplicates=0.05, seed=21)
    producer = Producer(BotoKinesis(kinesis), SystemClock())
    flow = threading.Thread(target=producer.run, args=(stream, spec), kwargs={"keep": produced})
    flow.start()
    rng = random.Random(4)
    kills = 0
    try:
        while flow.is_alive() or kills < 4:
            proc = subprocess.Popen(
                tap, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(rng.uniform(0.8, 2.0))  # ~1 s to start, then killed mid-read or later
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
    finally:
        flow.join(60)
    time.sleep(1.2)  # the killed workers' leases expire
    final = subprocess.run([*tap, "--once"], env=env, capture_output=True, timeout=120)
    assert final.returncode == 0, final.stderr.decode()[-2000:]
    assert json.loads(final.stdout)["millis_behind_latest"] == 0

    binding = load_config(config).taps[0]
    decoder = RecordDecoder(binding)
    valid = [p for p in produced if p.kind == "ok"]
    retries = sum(p.kind == "duplicate" for p in produced)
    ids = []
    for p in valid:
        record = StreamRecord(stream, "s", "1", p.partition_key, SystemClock().now(), p.body)
        (sub,) = decoder.submissions(record)
        assert isinstance(sub.parsed, Event)
        ids.append(event_id(sub.parsed))
    assert len(set(ids)) == len(valid) == len(produced) - retries
    duplicates = 0
    for eid in ids:
        item = kit.index.get(eid)
        assert item is not None and item.get("archive_key"), eid  # indexed, pointing at its file
        duplicates += len(item.get("dup_occurrences") or [])
    assert duplicates == retries
    assert kills >= 4
