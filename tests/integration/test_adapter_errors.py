"""Every adapter translates through ``infra.aws_errors`` (DynamoDB ones through ``infra.dynamo``):
on the embedded backend, a table or bucket that was never bootstrapped is a ``ResourceMissing``
naming the operation and the resource, chained to botocore's error, whichever adapter hit it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from infra.aggregates import DynamoAggregates
from infra.archive import S3RawArchive
from infra.aws import AwsClients
from infra.errors import ResourceMissing
from infra.leases_dynamo import DynamoLeaseStore
from infra.queue import queue_url
from infra.replay_jobs import DynamoReplayJobs
from infra.replay_log import S3ReplayLog
from infra.replay_queries import DynamoReplayQueries
from pik.settings import Settings

Call = Callable[[Any, Settings], object]

CALLS: dict[str, tuple[str, str, Call]] = {
    "leases get_many": (
        "leases_table",
        "BatchGetItem",
        lambda ddb, s: DynamoLeaseStore(ddb, s.leases_table).get_many("orders", ["shard-0"]),
    ),
    "leases acquire": (
        "leases_table",
        "UpdateItem (acquire lease)",
        lambda ddb, s: DynamoLeaseStore(ddb, s.leases_table).acquire(
            "orders", "shard-0", "w", 0, 1
        ),
    ),
    "replay job get": (
        "replay_jobs_table",
        "GetItem",
        lambda ddb, s: DynamoReplayJobs(ddb, s.replay_jobs_table).get("rp-1"),
    ),
    "replay jobs recent": (
        "replay_jobs_table",
        "Query",
        lambda ddb, s: DynamoReplayJobs(ddb, s.replay_jobs_table).recent(),
    ),
    "aggregate versions": (
        "aggregates_table",
        "Query",
        lambda ddb, s: DynamoAggregates(
            ddb, s.aggregates_table, S3RawArchive(None, s.bucket)
        ).versions("user_1"),
    ),
    "occurrence items": (
        "events_table",
        "BatchGetItem",
        lambda ddb, s: DynamoReplayQueries(ddb, s.events_table).occurrence_items([("e", "o")]),
    ),
    "deliveries": (
        "events_table",
        "BatchGetItem",  # the wide mark of the source's by_ingest key is read first
        lambda ddb, s: list(
            DynamoReplayQueries(ddb, s.events_table).deliveries(
                "demo#2025-12-29", "a", "z", statuses=["ACCEPTED"]
            )
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_missing_table_names_the_operation_and_the_table(name: str, settings: Settings) -> None:
    attribute, operation, call = CALLS[name]
    table = getattr(settings, attribute)
    ddb = AwsClients(settings.aws()).dynamodb()
    with pytest.raises(ResourceMissing) as info:
        call(ddb, settings)
    assert str(info.value) == (
        f"DynamoDB {operation} on {table}: table does not exist (run `pik bootstrap`)"
    )
    assert info.value.code == "ResourceNotFoundException"
    assert isinstance(info.value.__cause__, ClientError)


@pytest.mark.parametrize("operation", ["PutObject", "ListObjectsV2"])
def test_the_replay_log_names_a_missing_bucket(operation: str, settings: Settings) -> None:
    log = S3ReplayLog(AwsClients(settings.aws()).s3(), settings.bucket)
    with pytest.raises(ResourceMissing) as info:
        if operation == "PutObject":
            log.append("rp-1", 0, "runner", [{"key": "k", "event_id": "e"}])
        else:
            log.sent("rp-1", "e")
    assert str(info.value) == (
        f"S3 {operation} on s3://{settings.bucket}/replays/: bucket does not exist"
        " (run `pik bootstrap`)"
    )
    assert isinstance(info.value.__cause__, ClientError)


@pytest.mark.parametrize("operation", ["PutObject", "GetObject"])
def test_the_archive_names_a_missing_bucket(operation: str, settings: Settings) -> None:
    archive = S3RawArchive(AwsClients(settings.aws()).s3(), settings.bucket)
    key = "raw/source=demo/x.avro"
    with pytest.raises(ResourceMissing) as info:
        if operation == "PutObject":
            archive.put_file(key, b"body")
        else:
            archive.get_file(key)
    assert str(info.value) == (
        f"S3 {operation} on s3://{settings.bucket}/{key}: bucket does not exist"
        " (run `pik bootstrap`)"
    )


def test_the_work_queue_names_a_missing_queue(settings: Settings) -> None:
    with pytest.raises(ResourceMissing) as info:
        queue_url(AwsClients(settings.aws()).sqs(), settings.replay_queue)
    assert str(info.value) == (
        f"SQS GetQueueUrl on {settings.replay_queue}: queue does not exist (run `pik bootstrap`)"
    )
