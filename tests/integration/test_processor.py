"""The processor on the embedded backend: deterministic, versioned, explainable aggregates."""

from __future__ import annotations

import json
import threading

import pytest

from consumers.ingest import Submission
from consumers.processor import AggregateDefinition, Processor, diff_versions
from consumers.processor_loop import run_queue
from infra.aggregates import DynamoAggregates
from infra.clock import FixedClock
from infra.local import EmbeddedAws
from pik.kit import Kit, build_kit
from schemas.codec import Provenance
from schemas.envelope import parse_body
from tests.conftest import fresh_settings

DAY = "2025-12-28"
DEFINITIONS = (
    AggregateDefinition("daily_event_count"),
    AggregateDefinition("daily_steps", kind="sum", field="steps", event_type="heartbeat"),
    AggregateDefinition("max_steps", kind="max", field="steps"),
)


def event(n: int, entity: str = "user_123", hour: int = 10, **payload: object) -> bytes:
    return json.dumps(
        {
            "source": "demo",
            "event_type": "heartbeat",
            "entity_id": entity,
            "event_time": f"{DAY}T{hour:02d}:{n % 60:02d}:00Z",
            "payload": {"steps": n, **payload},
        }
    ).encode()


def ingest(kit: Kit, bodies: list[bytes], label: str) -> list[dict]:
    subs = [
        Submission(b, Provenance(f"{label}:{i}", "http"), parse_body(b), str(i))
        for i, b in enumerate(bodies)
    ]
    results = kit.sink.ingest(subs, label=label)
    return [
        {
            "replay_id": f"replay-{label}",
            "event_id": r.event_id,
            "entity_id": json.loads(b)["entity_id"],
            "event_time": json.loads(b)["event_time"],
            "archive": r.archive.to_json() if r.archive else None,
        }
        for r, b in zip(results, bodies, strict=True)
    ]


def processor(kit: Kit) -> Processor:
    return Processor(
        kit.index, kit.archive, kit.aggregates(), kit.clock, kit.metrics, definitions=DEFINITIONS
    )


def messages(docs: list[dict]) -> list[tuple[str, str]]:
    return [(f"m{i}", json.dumps(d)) for i, d in enumerate(docs)]


def test_same_inputs_in_any_order_and_grouping_give_the_same_value_and_hash(
    aws_server: EmbeddedAws, clock: FixedClock
) -> None:
    bodies = [event(n) for n in range(1, 13)]
    outcomes = []
    for order in (bodies, list(reversed(bodies))):
        kit = build_kit(fresh_settings(aws_server.endpoint_url), clock=clock)
        kit.bootstrap().run(demo_stream=False)
        docs = ingest(kit, order, "b")
        proc = processor(kit)
        if outcomes:  # second kit: messages in another order, in two batches
            proc.process(messages(docs[6:]))
            proc.process(messages(docs[:6]))
        else:
            proc.process(messages(docs))
        outcomes.append({v.metric: v for v in kit.aggregates().versions("user_123", DAY)})
    first, second = outcomes
    for metric in ("daily_event_count", "daily_steps", "max_steps"):
        assert first[metric].value == second[metric].value
        assert first[metric].input_hash == second[metric].input_hash
    assert first["daily_event_count"].value == 12
    assert first["daily_steps"].value == sum(range(1, 13))
    assert first["max_steps"].value == 12


def test_replaying_twice_writes_one_version(kit: Kit) -> None:
    docs = ingest(kit, [event(n) for n in range(5)], "b")
    proc = processor(kit)
    first = proc.process(messages(docs))
    again = proc.process(messages(docs))
    assert len(first.written) == 3 and not first.failed
    assert again.written == [] and again.unchanged == 3
    assert [v.version for v in kit.aggregates().versions("user_123", DAY)] == [1, 1, 1]


def test_a_late_event_then_replay_makes_a_version_whose_diff_names_it(kit: Kit) -> None:
    docs = ingest(kit, [event(n) for n in range(1, 4)], "b1")
    proc = processor(kit)
    proc.process(messages(docs))
    [late] = ingest(kit, [event(40, hour=23)], "late")
    outcome = proc.process(messages([late]))
    written = {v.metric: v for v in outcome.written}
    assert set(written) == {"daily_event_count", "daily_steps", "max_steps"}
    count = written["daily_event_count"]
    assert (count.version, count.previous_version, count.value) == (2, 1, 4)
    assert count.replay_id == "replay-late"
    store = kit.aggregates()
    versions = [v for v in store.versions("user_123", DAY) if v.metric == "daily_steps"]
    change = diff_versions(store, versions[0], versions[1])
    assert change.added == [late["event_id"]]
    assert change.removed == []
    assert (change.from_value, change.to_value) == (6, 46)


def test_two_processors_racing_lose_and_duplicate_no_version(kit: Kit) -> None:
    proc_a, proc_b = processor(kit), processor(kit)
    barrier = threading.Barrier(2)
    rounds = 6

    def run(proc: Processor, docs_by_round: list[list[dict]]) -> None:
        for docs in docs_by_round:
            barrier.wait()
            proc.process(messages(docs))

    docs_by_round = []
    for r in range(rounds):
        docs_by_round.append(ingest(kit, [event(100 + r)], f"r{r}"))
    threads = [threading.Thread(target=run, args=(p, docs_by_round)) for p in (proc_a, proc_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = [
        v for v in kit.aggregates().versions("user_123", DAY) if v.metric == "daily_event_count"
    ]
    assert [v.version for v in counts] == list(range(1, len(counts) + 1))  # no gap, no twin
    assert len({v.input_hash for v in counts}) == len(counts)  # each version a real change
    assert counts[-1].value == rounds  # the latest equals a from-scratch recomputation


def test_poison_message_reaches_the_dead_letter_queue_and_the_rest_succeed(kit: Kit) -> None:
    docs = ingest(kit, [event(n) for n in range(3)], "b")
    broken = {**docs[0], "archive": {**docs[0]["archive"], "key": "raw/missing.avro"}}
    queue = kit.replay_queue()
    sqs = kit.clients.sqs()
    for body in [*docs, broken, {"not": "a replay message"}]:
        sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps(body))
    summary = run_queue(processor(kit), queue, once=True, retry_base_s=0)
    assert summary.versions_written == 3
    assert summary.failed >= 2
    dlq = sqs.get_queue_url(QueueName=kit.names.replay_dlq)["QueueUrl"]
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    bodies = sorted(m["Body"] for m in dead.get("Messages", []))
    assert bodies == sorted([json.dumps(broken), json.dumps({"not": "a replay message"})])
    left = sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    assert "Messages" not in left


def test_dry_run_computes_and_writes_nothing(kit: Kit) -> None:
    docs = ingest(kit, [event(n) for n in range(2)], "b")
    proc = processor(kit)
    proc.dry_run = True
    outcome = proc.process(messages(docs))
    assert {v.metric for v in outcome.written} == {"daily_event_count", "daily_steps", "max_steps"}
    assert kit.aggregates().versions("user_123", DAY) == []


def test_large_windows_keep_their_input_list_in_s3(kit: Kit) -> None:
    count = 30
    docs = ingest(kit, [event(n, hour=n % 24, k=n) for n in range(count)], "big")
    store = DynamoAggregates(
        kit.clients.dynamodb(), kit.names.aggregates_table, kit.archive, inline_limit=10
    )
    proc = Processor(
        kit.index, kit.archive, store, kit.clock, kit.metrics, definitions=DEFINITIONS[:1]
    )
    proc.process(messages(docs[:1]))
    [version] = store.versions("user_123", DAY)
    assert version.value == count
    assert version.input_event_ids is None
    assert version.inputs_key and version.inputs_key.startswith("aggregates/user_123/")
    assert sorted(store.inputs(version)) == sorted(d["event_id"] for d in docs)


def test_lambda_handler_reports_batch_item_failures(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pik.lambdas import processor as lambda_processor

    docs = ingest(kit, [event(n) for n in range(2)], "b")
    monkeypatch.setenv("AWS_ENDPOINT_URL", kit.settings.endpoint_url or "")
    for name in ("bucket", "events_table", "aggregates_table"):
        monkeypatch.setenv(f"PIK_{name.upper()}", getattr(kit.settings, name))
    lambda_processor._built.cache_clear()
    records = [{"messageId": f"m{i}", "body": json.dumps(d)} for i, d in enumerate(docs)]
    records.append({"messageId": "poison", "body": "{}"})
    answer = lambda_processor.handler({"Records": records}, None)
    lambda_processor._built.cache_clear()
    assert answer == {"batchItemFailures": [{"itemIdentifier": "poison"}]}
    [version] = kit.aggregates().versions("user_123", DAY)
    assert (version.metric, version.value) == ("daily_event_count", 2)


def test_lambda_handler_under_dry_run_hands_every_message_back_unhandled(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pik.lambdas import processor as lambda_processor

    docs = ingest(kit, [event(n) for n in range(2)], "b")
    monkeypatch.setenv("AWS_ENDPOINT_URL", kit.settings.endpoint_url or "")
    monkeypatch.setenv("DRY_RUN", "true")
    for name in ("bucket", "events_table", "aggregates_table"):
        monkeypatch.setenv(f"PIK_{name.upper()}", getattr(kit.settings, name))
    lambda_processor._built.cache_clear()
    records = [{"messageId": f"m{i}", "body": json.dumps(d)} for i, d in enumerate(docs)]
    try:
        answer = lambda_processor.handler({"Records": records}, None)
    finally:
        lambda_processor._built.cache_clear()
    # Success would let the mapping delete them: a dry run must not consume.
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m1"}]}
    assert kit.aggregates().versions("user_123", DAY) == []


def test_dry_runs_of_the_queue_loop_leave_queue_table_and_bucket_as_they_were(kit: Kit) -> None:
    from consumers.processor_loop import DryRunRefused

    docs = ingest(kit, [event(n) for n in range(3)], "b")
    queue = kit.replay_queue()
    sqs, s3, ddb = kit.clients.sqs(), kit.clients.s3(), kit.clients.dynamodb()
    for body in docs:
        sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps(body))

    def state() -> tuple[int, int, int]:
        attrs = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"])["Attributes"]
        objects = s3.list_objects_v2(Bucket=kit.names.bucket).get("KeyCount", 0)
        items = ddb.scan(TableName=kit.names.aggregates_table, Select="COUNT")["Count"]
        return int(attrs["ApproximateNumberOfMessages"]), objects, items

    before = state()
    proc = processor(kit)
    proc.dry_run = True
    for _ in range(6):
        with pytest.raises(DryRunRefused, match="maxReceiveCount"):
            run_queue(proc, queue, once=True, wait_s=1)
    assert state() == before == (3, before[1], 0)
    got = sqs.receive_message(
        QueueUrl=queue.url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=1,
        AttributeNames=["ApproximateReceiveCount"],
    )["Messages"]
    assert len(got) == 3
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in got} == {"1"}


def test_the_loser_of_a_version_race_recomputes_and_never_writes_its_stale_inputs(
    kit: Kit,
) -> None:
    """A reads the window (2 events); a third event arrives and B writes v1 from all three in
    between A's read and A's write; A's v1 is taken. A must not write its two-event inputs as v2."""
    docs = ingest(kit, [event(n) for n in range(2)], "early")
    store = kit.aggregates()
    late: list[dict] = []

    class Interleaved:
        """The aggregates store, with processor B's whole run slipped in before A's first put."""

        def __init__(self) -> None:
            self.raced = False

        def __getattr__(self, name: str) -> object:
            return getattr(store, name)

        def put(self, version: object) -> None:
            if not self.raced:
                self.raced = True
                late.extend(ingest(kit, [event(7, hour=11)], "late"))
                winner = Processor(
                    kit.index,
                    kit.archive,
                    store,
                    kit.clock,
                    kit.metrics,
                    definitions=DEFINITIONS[:1],
                )
                assert len(winner.process(messages(late)).written) == 1
            store.put(version)  # type: ignore[arg-type]

    proc_a = Processor(
        kit.index, kit.archive, Interleaved(), kit.clock, kit.metrics, definitions=DEFINITIONS[:1]
    )  # type: ignore[arg-type]
    outcome = proc_a.process(messages(docs))
    assert outcome.failed == {}
    versions = store.versions("user_123", DAY)
    assert [(v.version, v.value) for v in versions] == [(1, 3)]
    assert sorted(store.inputs(versions[-1])) == sorted(d["event_id"] for d in docs + late)
    assert outcome.written == [] and outcome.unchanged == 1


def test_a_window_whose_inputs_did_not_change_costs_no_archive_read(kit: Kit) -> None:
    early = ingest(kit, [event(n) for n in range(3)], "early")
    late = ingest(kit, [event(n, hour=12) for n in range(3)], "late")  # another archive file
    processor(kit).process(messages(early + late))
    fetched: list[str] = []

    class Counting:
        def __getattr__(self, name: str) -> object:
            return getattr(kit.archive, name)

        def get_file(self, key: str) -> bytes:
            fetched.append(key)
            return kit.archive.get_file(key)

    again = Processor(
        kit.index, Counting(), kit.aggregates(), kit.clock, kit.metrics, definitions=DEFINITIONS
    )  # type: ignore[arg-type]
    outcome = again.process(messages(late))  # replayed again: every input hash is unchanged
    assert outcome.written == [] and outcome.unchanged == len(DEFINITIONS)
    assert set(fetched) == {late[0]["archive"]["key"]}  # the messages' own file, not the window's
