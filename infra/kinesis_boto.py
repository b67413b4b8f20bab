"""``StreamPort`` on boto3's Kinesis client; AWS errors become the kit's at this edge.

Enhanced fan-out: ``SubscribeToShard`` answers an HTTP/2-style event stream (botocore's
``EventStream``); ``BotoSubscription`` turns its ``SubscribeToShardEvent``s into pages and its
error events, broken connections and a ``close()`` from another thread into the kit's errors.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError as Urllib3Error

from infra.errors import BackendError, ResourceMissing, Unsupported
from infra.kinesis import (
    ConsumerStatus,
    IteratorExpired,
    Page,
    Shard,
    StartAt,
    StartKind,
    StreamConsumer,
    StreamRecord,
    SubscriptionBroken,
    SubscriptionBusy,
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
        if code == "ResourceInUseException" and what == SUBSCRIBE:
            return SubscriptionBusy(text, service="kinesis", code=code)
        return BackendError(text, service="kinesis", code=code)
    return BackendError(f"Kinesis {what} on {where}: {exc}", service="kinesis")


SUBSCRIBE = "SubscribeToShard"
NOT_IMPLEMENTED_CODES = frozenset({"NotImplemented", "UnknownOperationException"})
NO_FAN_OUT_HINT = (
    "enhanced fan-out needs an endpoint that implements SubscribeToShard "
    "(moto does not): run the tap without --efo"
)


def _subscribe_failed(exc: Exception, stream: str, shard_id: str) -> BackendError:
    """A SubscribeToShard call that failed after botocore's retries, for something other than
    a busy shard, throttling or a missing resource: say so in one line, with what to do."""
    error = translate(exc, SUBSCRIBE, stream, shard_id)
    if type(error) is not BackendError:
        return error
    reason = error.code or type(exc).__name__
    status = None
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = str(exc.response.get("Error", {}).get("Message", ""))
        if not message or message.lstrip().startswith("<"):  # an HTML error page
            message = ""
        reason = f"HTTP {status} {reason}" if reason != str(status) else f"HTTP {status}"
    else:
        message = str(exc)
    if message:
        reason += ": " + " ".join(message.split())[:200]
    # The endpoint says it lacks the operation: no retry or restart can help, only the operator.
    kind = Unsupported if status == 501 or error.code in NOT_IMPLEMENTED_CODES else BackendError
    return kind(
        f"Kinesis {SUBSCRIBE} on {stream}/{shard_id} failed: {reason}; {NO_FAN_OUT_HINT}",
        service="kinesis",
        code=error.code,
    )


class BotoKinesis:
    def __init__(self, kinesis_client: Any) -> None:
        self._kinesis = kinesis_client
        self._stream_arns: dict[str, str] = {}

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

    # -- enhanced fan-out ----------------------------------------------------------------------
    def stream_arn(self, stream: str) -> str:
        if stream not in self._stream_arns:
            try:
                out = self._kinesis.describe_stream_summary(StreamName=stream)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "DescribeStreamSummary", stream) from exc
            self._stream_arns[stream] = out["StreamDescriptionSummary"]["StreamARN"]
        return self._stream_arns[stream]

    def consumer(self, stream: str, name: str) -> StreamConsumer | None:
        try:
            out = self._kinesis.describe_stream_consumer(
                StreamARN=self.stream_arn(stream), ConsumerName=name
            )
        except (ClientError, BotoCoreError) as exc:
            error = translate(exc, "DescribeStreamConsumer", stream)
            if isinstance(error, ResourceMissing):
                return None
            raise error from exc
        return _consumer(out["ConsumerDescription"])

    def register_consumer(self, stream: str, name: str) -> StreamConsumer:
        try:
            out = self._kinesis.register_stream_consumer(
                StreamARN=self.stream_arn(stream), ConsumerName=name
            )
        except (ClientError, BotoCoreError) as exc:
            error = translate(exc, "RegisterStreamConsumer", stream)
            if error.code == "ResourceInUseException":  # registered meanwhile, by another tap
                found = self.consumer(stream, name)
                if found is not None:
                    return found
            raise error from exc
        return _consumer(out["Consumer"])

    def subscribe(
        self, stream: str, consumer_arn: str, shard_id: str, start: StartAt
    ) -> BotoSubscription:
        position: dict[str, Any] = {"Type": start.kind.value}
        if start.kind is StartKind.AFTER_SEQUENCE_NUMBER:
            position["SequenceNumber"] = start.sequence_number
        elif start.kind is StartKind.AT_TIMESTAMP:
            position["Timestamp"] = start.timestamp
        try:
            out = self._kinesis.subscribe_to_shard(
                ConsumerARN=consumer_arn, ShardId=shard_id, StartingPosition=position
            )
        except (ClientError, BotoCoreError) as exc:
            raise _subscribe_failed(exc, stream, shard_id) from exc
        return BotoSubscription(stream, shard_id, out["EventStream"])


def _consumer(raw: Mapping[str, Any]) -> StreamConsumer:
    return StreamConsumer(
        raw["ConsumerName"], raw["ConsumerARN"], ConsumerStatus(raw["ConsumerStatus"])
    )


class BotoSubscription:
    """One SubscribeToShard event stream as pages (see ``infra.kinesis.Subscription``)."""

    def __init__(self, stream: str, shard_id: str, event_stream: Any) -> None:
        self._stream = stream
        self._shard_id = shard_id
        self._events = event_stream
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()
        self._events.close()

    def __iter__(self) -> Iterator[Page]:
        events = iter(self._events)
        while True:
            try:
                event = next(events)
            except StopIteration:
                return
            except ClientError as exc:  # an error event (EventStreamError)
                if self._closed.is_set():
                    raise self._broken("closed") from exc
                error = translate(exc, SUBSCRIBE, self._stream, self._shard_id)
                if type(error) is BackendError:  # a server-side failure: subscribe again
                    raise SubscriptionBroken(
                        str(error), service="kinesis", code=error.code
                    ) from exc
                raise error from exc
            except (BotoCoreError, Urllib3Error, OSError) as exc:
                raise self._broken(str(exc)) from exc
            except Exception as exc:  # reading a body that close() tore down meanwhile
                if self._closed.is_set():
                    raise self._broken("closed") from exc
                raise
            body = event.get("SubscribeToShardEvent")
            if body is not None:
                yield self._page(body)

    def _broken(self, why: str) -> SubscriptionBroken:
        return SubscriptionBroken(
            f"Kinesis {SUBSCRIBE} on {self._stream}/{self._shard_id}: the event stream broke "
            f"off: {why}",
            service="kinesis",
        )

    def _page(self, body: Mapping[str, Any]) -> Page:
        records = [
            StreamRecord(
                stream=self._stream,
                shard_id=self._shard_id,
                sequence_number=raw["SequenceNumber"],
                partition_key=raw["PartitionKey"],
                arrival_time=_aware(raw["ApproximateArrivalTimestamp"]),
                data=raw["Data"],
            )
            for raw in body.get("Records", [])
        ]
        children = tuple(c["ShardId"] for c in body.get("ChildShards") or [])
        # The shard's end: no continuation, or ChildShards (AWS sends them only at the end).
        continuation = None if children else body.get("ContinuationSequenceNumber")
        return Page(records, continuation, body.get("MillisBehindLatest"), children)


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
