"""Bootstrap on the embedded backend: every resource, configured, and idempotent."""

from __future__ import annotations

import json

import pytest

from infra.errors import BackendError
from infra.local import EmbeddedAws
from pik.kit import build_kit
from pik.settings import Settings
from tests.conftest import fresh_settings


def test_bootstrap_creates_everything_then_changes_nothing(settings: Settings) -> None:
    kit = build_kit(settings)
    first = kit.bootstrap().run()
    second = kit.bootstrap().run()

    assert len(first["created"]) == 8  # bucket, 4 tables, 2 queues, 1 stream
    assert second["created"] == []
    assert {k: v for k, v in first.items() if k != "created"} == {
        k: v for k, v in second.items() if k != "created"
    }
    s3 = kit.clients.s3()
    rules = s3.get_bucket_encryption(Bucket=settings.bucket)["ServerSideEncryptionConfiguration"]
    assert rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=settings.bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    assert s3.get_bucket_versioning(Bucket=settings.bucket)["Status"] == "Enabled"


def test_events_table_has_the_query_paths(settings: Settings) -> None:
    kit = build_kit(settings)
    kit.bootstrap().run(demo_stream=False)
    table = kit.clients.dynamodb().describe_table(TableName=settings.events_table)["Table"]
    indexes = {
        i["IndexName"]: [k["AttributeName"] for k in i["KeySchema"]]
        for i in table["GlobalSecondaryIndexes"]
    }
    assert indexes == {
        "by_entity": ["ek", "time_key"],
        "by_ingest": ["op", "occ_key"],
    }
    projections = {i["IndexName"]: i["Projection"] for i in table["GlobalSecondaryIndexes"]}
    for name in ("by_entity",):  # what selections read, not the whole item
        assert projections[name]["ProjectionType"] == "INCLUDE"
        assert "archive_key" in projections[name]["NonKeyAttributes"]
        assert "provenance" not in projections[name]["NonKeyAttributes"]
    for name in (settings.leases_table, settings.replay_jobs_table, settings.aggregates_table):
        assert (
            kit.clients.dynamodb().describe_table(TableName=name)["Table"]["TableStatus"]
            == "ACTIVE"
        )


def test_replay_queue_redrives_to_its_dead_letter_queue(settings: Settings) -> None:
    kit = build_kit(settings)
    result = kit.bootstrap().run(demo_stream=False)
    attrs = kit.clients.sqs().get_queue_attributes(
        QueueUrl=result["replay_queue_url"], AttributeNames=["All"]
    )["Attributes"]
    policy = json.loads(attrs["RedrivePolicy"])
    assert policy["deadLetterTargetArn"] == result["replay_dlq_arn"]
    assert int(policy["maxReceiveCount"]) >= 1


def test_bootstrap_names_an_events_table_of_the_older_layout(settings: Settings) -> None:
    """A table made by the turn-1 kit is kept as it is, and bootstrap says how to move."""
    kit = build_kit(settings)
    kit.clients.dynamodb().create_table(
        TableName=settings.events_table,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[
            {"AttributeName": "event_id", "KeyType": "HASH"},
            {"AttributeName": "item", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": n, "AttributeType": "S"}
            for n in ("event_id", "item", "source_day", "time_key")
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_source_day",
                "KeySchema": [
                    {"AttributeName": "source_day", "KeyType": "HASH"},
                    {"AttributeName": "time_key", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    result = kit.bootstrap().run(demo_stream=False)
    [note] = result["notes"]
    assert "older index layout (by_source_day)" in note and "pik reindex" in note
    fresh = build_kit(settings.model_copy(update={"events_table": settings.events_table + "-2"}))
    assert fresh.bootstrap().run(demo_stream=False)["notes"] == []


def test_a_failed_bootstrap_names_the_call_and_the_resource(aws_server: EmbeddedAws) -> None:
    settings = fresh_settings(aws_server.endpoint_url, bucket="no spaces")  # botocore refuses it
    with pytest.raises(BackendError) as info:
        build_kit(settings).bootstrap().run(demo_stream=False)
    assert str(info.value).startswith("bootstrap failed: S3 CreateBucket on s3://no spaces: ")
    assert info.value.code == "ParamValidationError"
