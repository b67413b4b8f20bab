"""Replay targets: batching within limits, retries of partial failures, ids, spec forms."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.errors import BackendError
from infra.targets import (
    KINESIS_MAX_BATCH_RECORDS,
    MAX_SEND_ATTEMPTS,
    SQS_MAX_BATCH_BYTES,
    InvalidTarget,
    KinesisTarget,
    MemoryTarget,
    NdjsonFileTarget,
    SqsTarget,
    TargetMessage,
    check_target_spec,
    fifo_dedup_id,
    message_group_id,
)


def msg(i: int, size: int = 10, group: str = "user_1") -> TargetMessage:
    return TargetMessage(key=f"k{i}", body="x" * size, group=group, dedup_id=f"d{i}")


class FakeSqs:
    """send_message_batch answering with scripted failures, one script per call."""

    def __init__(self, scripts: list[dict[str, tuple[str, bool]] | Exception]) -> None:
        self.scripts = scripts
        self.calls: list[list[dict[str, Any]]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        script = self.scripts.pop(0) if self.scripts else {}
        if isinstance(script, Exception):
            raise script
        bodies = {e["Id"]: e["MessageBody"] for e in Entries}
        failed = [
            {"Id": i, "Code": code, "Message": "no", "SenderFault": sender}
            for i, body in bodies.items()
            for key, (code, sender) in script.items()
            if body == key
        ]
        ok = [{"Id": i} for i in bodies if i not in {f["Id"] for f in failed}]
        return {"Successful": ok, "Failed": failed}


def test_batches_respect_count_and_bytes() -> None:
    target = MemoryTarget()
    sizes = [len(b) for b in target.batches([msg(i) for i in range(25)])]
    assert sizes == [10, 10, 5]
    big = [msg(i, size=100 * 1024) for i in range(5)]
    assert [len(b) for b in SqsTarget(None, "u").batches(big)] == [2, 2, 1]
    assert [len(b) for b in target.batches([msg(i) for i in range(7)], max_messages=3)] == [3, 3, 1]
    many = [msg(i) for i in range(1200)]
    assert [len(b) for b in KinesisTarget(None, "s").batches(many)] == [500, 500, 200]
    assert KINESIS_MAX_BATCH_RECORDS == 500


def test_sqs_retries_only_what_failed_and_never_resends_what_was_accepted() -> None:
    batch = [TargetMessage(f"k{i}", f"b{i}", "g", f"d{i}") for i in range(5)]
    sqs = FakeSqs(
        [
            {"b1": ("InternalError", False), "b3": ("InvalidParameterValue", True)},
            {"b1": ("ServiceUnavailable", False)},
            {},
        ]
    )
    slept: list[float] = []
    outcome = SqsTarget(sqs, "https://q/1/n", sleep=slept.append, seed=1).send_batch(batch)
    assert sorted(outcome.sent) == ["k0", "k1", "k2", "k4"]
    assert list(outcome.failed) == ["k3"] and "InvalidParameterValue" in outcome.failed["k3"]
    assert [len(c) for c in sqs.calls] == [5, 1, 1]  # only the retryable failure went again
    assert len(slept) == 2 and all(0 <= s <= 2.0 for s in slept)


def test_sqs_gives_up_after_max_attempts_and_treats_call_errors_as_retryable() -> None:
    batch = [TargetMessage("k0", "b0", "g", "d0")]
    sqs = FakeSqs([BackendError("boom")] * MAX_SEND_ATTEMPTS)
    outcome = SqsTarget(sqs, "u", sleep=lambda _: None).send_batch(batch)
    assert outcome.sent == [] and "boom" in outcome.failed["k0"]
    assert outcome.attempts == MAX_SEND_ATTEMPTS


def test_fifo_entries_carry_group_and_dedup_id() -> None:
    sqs = FakeSqs([{}])
    SqsTarget(sqs, "https://q/1/replays.fifo").send_batch([msg(1)])
    [entry] = sqs.calls[0]
    assert (entry["MessageGroupId"], entry["MessageDeduplicationId"]) == ("user_1", "d1")
    sqs = FakeSqs([{}])
    SqsTarget(sqs, "https://q/1/replays").send_batch([msg(1)])
    assert "MessageGroupId" not in sqs.calls[0][0]


def test_a_message_over_the_limit_fails_without_a_call() -> None:
    sqs = FakeSqs([])
    outcome = SqsTarget(sqs, "u").send_batch([msg(1, size=SQS_MAX_BATCH_BYTES + 1)])
    assert "over the target's limit" in outcome.failed["k1"] and sqs.calls == []


def test_kinesis_partial_failures_by_error_code() -> None:
    class FakeKinesis:
        def __init__(self) -> None:
            self.calls: list[list[dict[str, Any]]] = []

        def put_records(self, Records: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
            self.calls.append(Records)
            out: list[dict[str, Any]] = []
            for r in Records:
                if r["Data"] == b"b1" and len(self.calls) == 1:
                    out.append({"ErrorCode": "ProvisionedThroughputExceededException"})
                elif r["Data"] == b"b2":
                    out.append({"ErrorCode": "AccessDenied", "ErrorMessage": "no"})
                else:
                    out.append({"SequenceNumber": "1", "ShardId": "s"})
            return {"Records": out, "FailedRecordCount": 0}

    kinesis = FakeKinesis()
    batch = [TargetMessage(f"k{i}", f"b{i}", f"user_{i}", "") for i in range(3)]
    outcome = KinesisTarget(kinesis, "orders", sleep=lambda _: None).send_batch(batch)
    assert sorted(outcome.sent) == ["k0", "k1"] and list(outcome.failed) == ["k2"]
    assert [r["PartitionKey"] for r in kinesis.calls[0]] == ["user_0", "user_1", "user_2"]


def test_file_target_appends_lines(tmp_path: Path) -> None:
    path = tmp_path / "out" / "replay.ndjson"
    for start in (0, 2):
        target = NdjsonFileTarget(path)
        target.send_batch(
            [TargetMessage(f"k{i}", json.dumps({"i": i}), "g", "") for i in range(start, start + 2)]
        )
        target.close()
    assert [json.loads(line)["i"] for line in path.read_text().splitlines()] == [0, 1, 2, 3]


def test_ids_stay_within_sqs_limits() -> None:
    assert fifo_dedup_id("rp-1", "a" * 64) == "rp-1:" + "a" * 64
    long_key = "a" * 64 + "/kinesis:stream:shardId-000000000001:" + "9" * 56 + ":0"
    dedup = fifo_dedup_id("rp-1", long_key)
    assert len(dedup) <= 128 and dedup != fifo_dedup_id("rp-1", long_key + "x")
    assert message_group_id("user_123") == "user_123"
    assert message_group_id(None) == "_unknown"
    assert len(message_group_id("é" * 200)) <= 128


def test_spec_forms() -> None:
    assert check_target_spec(None) is None and check_target_spec("default") is None
    with pytest.raises(InvalidTarget, match="command line"):
        check_target_spec("file:///tmp/x.ndjson", allow_files=False)
    for bad in ("ftp://x", "sqs://", "kinesis://", "https://host/only-one-part", "file://"):
        with pytest.raises(InvalidTarget):
            check_target_spec(bad)
