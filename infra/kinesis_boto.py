"""``StreamPort`` on boto3's Kinesis client; AWS errors become the kit's at this edge.

(An adapter: it belongs in ``infra/`` by the layout rule and moves there unchanged.)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from infra.errors import BackendError, ResourceMissing
from infra.kinesis import (
    IteratorExpired,
    Page,
    Shard,
    StartAt,
    StartKind,
    StreamRecord,
    Throttled,
)

THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ThrottlingException",
        "KMSThrottlingException",
        "RequestLimitExceeded",
    }
)


def translate(exc: Exception, what: str, stream: str, shard_id: str = "") -> BackendError:
    where = f"{stream}/{shard_id}" if shard_id else stream
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        text = f"Kinesis {what} on {where}: {code}: {message}"
        if code in THROTTLING_CODES:
            return Throttled(text, service="kinesis", code=code)
        if code == "ExpiredIteratorException":
            return IteratorExpired(text, service="kinesis", code=code)
        if code == "ResourceNotFoundException":
            return ResourceMissing(text, service="kinesis", code=code)
        return BackendError(text, service="kinesis", code=code)
    return BackendError(f"Kinesis {what} on {where}: {exc}", service="kinesis")


class BotoKinesis:
    def __init__(self, kinesis_client: Any) -> None:
        self._kinesis = kinesis_client

    def list_shards(self, stream: str) -> list[Shard]:
        shards: list[Shard] = []
        try:
            paginator = self._kinesis.get_paginator("list_shards")
            for page in paginator.paginate(StreamName=stream):
                for raw in page.get("Shards", []):
                    ending = raw.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
                    shards.append(
                        Shard(
                            raw["ShardId"],
                            raw.get("ParentShardId"),
                            raw.get("AdjacentParentShardId"),
                            ending,
                        )
                    )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "ListShards", stream) from exc
        return shards

    def iterator(self, stream: str, shard_id: str, start: StartAt) -> str:
        kwargs: dict[str, Any] = {
            "StreamName": stream,
            "ShardId": shard_id,
            "ShardIteratorType": start.kind.value,
        }
        if start.kind is StartKind.AFTER_SEQUENCE_NUMBER:
            kwargs["StartingSequenceNumber"] = start.sequence_number
        elif start.kind is StartKind.AT_TIMESTAMP:
            kwargs["Timestamp"] = start.timestamp
        try:
            out = self._kinesis.get_shard_iterator(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "GetShardIterator", stream, shard_id) from exc
        iterator: str = out["ShardIterator"]
        return iterator

    def put_records(
        self, stream: str, entries: list[tuple[str, bytes, str | None]]
    ) -> list[str | None]:
        return put_entries(self._kinesis, stream, entries)

    def get_records(self, stream: str, shard_id: str, iterator: str, limit: int) -> Page:
        try:
            out = self._kinesis.get_records(ShardIterator=iterator, Limit=limit)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "GetRecords", stream, shard_id) from exc
        records = [
            StreamRecord(
                stream=stream,
                shard_id=shard_id,
                sequence_number=raw["SequenceNumber"],
                partition_key=raw["PartitionKey"],
                arrival_time=_aware(raw["ApproximateArrivalTimestamp"]),
                data=raw["Data"],
            )
            for raw in out.get("Records", [])
        ]
        children = tuple(c["ShardId"] for c in out.get("ChildShards") or [])
        return Page(records, out.get("NextShardIterator"), out.get("MillisBehindLatest"), children)


def _aware(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def put_entries(
    kinesis_client: Any, stream: str, entries: list[tuple[str, bytes, str | None]]
) -> list[str | None]:
    """One PutRecords call; per entry ``None`` (stored) or the error code to retry on."""
    records: list[dict[str, Any]] = []
    for key, data, hash_key in entries:
        record: dict[str, Any] = {"PartitionKey": key, "Data": data}
        if hash_key:
            record["ExplicitHashKey"] = hash_key
        records.append(record)
    try:
        out = kinesis_client.put_records(StreamName=stream, Records=records)
    except (ClientError, BotoCoreError) as exc:
        error = translate(exc, "PutRecords", stream)
        if isinstance(error, Throttled):
            return [error.code] * len(entries)
        raise error from exc
    return [r.get("ErrorCode") for r in out["Records"]]
