"""Resource names and ``bootstrap``: create every bucket, table, queue and stream the kit uses.

Bootstrap is idempotent: what exists is kept (and checked), what is missing is created, and a
second run changes nothing.
"""

from __future__ import annotations

import contextlib
import json
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any

from infra.aws import AwsClients
from infra.aws_errors import map_aws_errors
from infra.dynamo import dynamo_errors
from infra.errors import BackendError, ResourceMissing
from infra.index_layout import LAYOUT_VERSION, LEGACY_INDEXES, gsi_specs

REPLAY_VISIBILITY_TIMEOUT_S = 120
REPLAY_MAX_RECEIVES = 5
DLQ_RETENTION_S = 14 * 24 * 3600
DEMO_STREAM_SHARDS = 2


@dataclass(frozen=True, slots=True)
class ResourceNames:
    bucket: str = "pik-raw"
    events_table: str = "pik-events"
    leases_table: str = "pik-leases"
    replay_jobs_table: str = "pik-replay-jobs"
    aggregates_table: str = "pik-aggregates"
    replay_queue: str = "pik-replay"
    replay_dlq: str = "pik-replay-dlq"
    demo_stream: str = "pik-demo"


def _gsi(name: str, hash_key: str, range_key: str) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": hash_key, "KeyType": "HASH"},
            {"AttributeName": range_key, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    }


def table_specs(names: ResourceNames) -> list[dict[str, Any]]:
    """CreateTable arguments for every table (also used by tests and the SAM template check)."""

    def attrs(**types: str) -> list[dict[str, str]]:
        return [{"AttributeName": k, "AttributeType": v} for k, v in types.items()]

    def keys(hash_key: str, range_key: str | None = None) -> list[dict[str, str]]:
        schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
        if range_key:
            schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
        return schema

    index_attrs, index_specs = gsi_specs()
    return [
        {
            "TableName": names.events_table,
            "KeySchema": keys("event_id", "item"),
            "AttributeDefinitions": [*attrs(event_id="S", item="S"), *index_attrs],
            "GlobalSecondaryIndexes": index_specs,
        },
        {
            "TableName": names.leases_table,
            "KeySchema": keys("lease_key"),
            "AttributeDefinitions": attrs(lease_key="S"),
        },
        {
            "TableName": names.replay_jobs_table,
            "KeySchema": keys("replay_id"),
            "AttributeDefinitions": attrs(replay_id="S", kind="S", created_at="S"),
            "GlobalSecondaryIndexes": [_gsi("by_created", "kind", "created_at")],
        },
        {
            # versions of an entity's aggregates: version_key = day#metric#00000042
            "TableName": names.aggregates_table,
            "KeySchema": keys("entity_id", "version_key"),
            "AttributeDefinitions": attrs(entity_id="S", version_key="S"),
        },
    ]


class Bootstrap:
    def __init__(self, clients: AwsClients, names: ResourceNames) -> None:
        self._clients = clients
        self.names = names
        self.created: list[str] = []
        self.notes: list[str] = []

    def run(self, *, demo_stream: bool = True) -> dict[str, Any]:
        try:
            self._bucket()
            for spec in table_specs(self.names):
                self._table(spec)
            urls = self._queues()
            if demo_stream:
                self._stream(self.names.demo_stream)
        except BackendError as exc:
            raise BackendError(
                f"bootstrap failed: {exc}", service=exc.service, code=exc.code, detail=exc.detail
            ) from exc
        return {
            **asdict(self.names),
            "region": self._clients.config.region,
            "endpoint_url": self._clients.config.endpoint_url,
            **urls,
            "created": self.created,
            "notes": self.notes,
        }

    def _bucket(self) -> None:
        s3 = self._clients.s3()
        bucket = self.names.bucket

        def s3_errors(operation: str) -> AbstractContextManager[None]:
            return map_aws_errors("s3", f"s3://{bucket}", operation)

        try:
            with s3_errors("HeadBucket"):
                s3.head_bucket(Bucket=bucket)
        except BackendError:  # missing, or not ours: CreateBucket says which
            kwargs: dict[str, Any] = {"Bucket": bucket}
            if self._clients.config.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {
                    "LocationConstraint": self._clients.config.region
                }
            try:
                with s3_errors("CreateBucket"):
                    s3.create_bucket(**kwargs)
                self.created.append(f"s3://{bucket}")
            except BackendError as exc:
                if exc.code != "BucketAlreadyOwnedByYou":
                    raise
        # Settings are re-applied each run: PUTs of the same configuration change nothing.
        with s3_errors("PutBucketEncryption"):
            s3.put_bucket_encryption(
                Bucket=bucket,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
            )
        with s3_errors("PutPublicAccessBlock"):
            s3.put_public_access_block(
                Bucket=bucket,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
            )
        with s3_errors("PutBucketVersioning"):
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    def _table(self, spec: dict[str, Any]) -> None:
        ddb = self._clients.dynamodb()
        name = spec["TableName"]
        try:
            with dynamo_errors(name, "DescribeTable"):
                described = ddb.describe_table(TableName=name)["Table"]
            self._check_layout(described)
            return
        except ResourceMissing:
            pass
        try:
            with dynamo_errors(name, "CreateTable"):
                ddb.create_table(BillingMode="PAY_PER_REQUEST", **spec)
            self.created.append(f"dynamodb:{name}")
        except BackendError as exc:
            if exc.code != "ResourceInUseException":  # created meanwhile
                raise
        with dynamo_errors(name, "DescribeTable (wait until it exists)"):
            ddb.get_waiter("table_exists").wait(
                TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
        # not every emulator has point-in-time recovery
        with contextlib.suppress(BackendError), dynamo_errors(name, "UpdateContinuousBackups"):
            ddb.update_continuous_backups(
                TableName=name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )

    def _check_layout(self, table: dict[str, Any]) -> None:
        """An events table made by an older kit is kept as it is, and said so."""
        if table.get("TableName") != self.names.events_table:
            return
        indexes = {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])}
        legacy = sorted(indexes & LEGACY_INDEXES)
        if legacy:
            self.notes.append(
                f"table {self.names.events_table} has an older index layout "
                f"({', '.join(legacy)}): it is left as it is. To move to layout "
                f"{LAYOUT_VERSION}, set PIK_EVENTS_TABLE to a new name, run `pik bootstrap`, "
                "then `pik reindex` (it rebuilds the index from the archive)."
            )

    def _queues(self) -> dict[str, str]:
        sqs = self._clients.sqs()
        names = (self.names.replay_dlq, self.names.replay_queue)
        before: set[str] = set()
        for name in names:
            with map_aws_errors("sqs", name, "ListQueues"):
                before.update(sqs.list_queues(QueueNamePrefix=name).get("QueueUrls", []))
        with map_aws_errors("sqs", self.names.replay_dlq, "CreateQueue"):
            dlq_url = sqs.create_queue(
                QueueName=self.names.replay_dlq,
                Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_S)},
            )["QueueUrl"]
        with map_aws_errors("sqs", self.names.replay_dlq, "GetQueueAttributes"):
            dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
        with map_aws_errors("sqs", self.names.replay_queue, "CreateQueue"):
            queue_url = sqs.create_queue(
                QueueName=self.names.replay_queue,
                Attributes={
                    "VisibilityTimeout": str(REPLAY_VISIBILITY_TIMEOUT_S),
                    "RedrivePolicy": json.dumps(
                        {
                            "deadLetterTargetArn": dlq_arn,
                            "maxReceiveCount": str(REPLAY_MAX_RECEIVES),
                        }
                    ),
                },
            )["QueueUrl"]
        for url in (dlq_url, queue_url):
            if url not in before:
                self.created.append(url)
        return {"replay_queue_url": queue_url, "replay_dlq_url": dlq_url, "replay_dlq_arn": dlq_arn}

    def _stream(self, name: str) -> None:
        kinesis = self._clients.kinesis()
        try:
            with map_aws_errors("kinesis", name, "DescribeStreamSummary"):
                kinesis.describe_stream_summary(StreamName=name)
            return
        except ResourceMissing:
            pass
        try:
            with map_aws_errors("kinesis", name, "CreateStream"):
                kinesis.create_stream(StreamName=name, ShardCount=DEMO_STREAM_SHARDS)
            self.created.append(f"kinesis:{name}")
        except BackendError as exc:
            if exc.code != "ResourceInUseException":  # created meanwhile
                raise
        with map_aws_errors("kinesis", name, "DescribeStream (wait until it exists)"):
            kinesis.get_waiter("stream_exists").wait(
                StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
