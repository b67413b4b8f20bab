"""infra/kinesis_boto.py's enhanced fan-out edge, without a server: SubscribeToShard events
become pages, error events and broken streams become the kit's errors, and a call that an
endpoint cannot serve fails in one line that says what to do."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.eventstream import EventStreamError
from botocore.exceptions import ClientError
from urllib3.exceptions import ProtocolError

from infra.errors import BackendError, ConfigError, ResourceMissing, Unsupported
from infra.kinesis import Page, StartAt, SubscriptionBroken, SubscriptionBusy, Throttled
from infra.kinesis_boto import BotoKinesis, BotoSubscription

ARRIVAL = datetime(2025, 12, 29, 0, 0, tzinfo=UTC)


def event(*seqs: str, continuation: str | None = "9", children: tuple[str, ...] = ()) -> Any:
    body: dict[str, Any] = {
        "Records": [
            {
                "SequenceNumber": s,
                "PartitionKey": "k",
                "ApproximateArrivalTimestamp": ARRIVAL,
                "Data": s.encode(),
            }
            for s in seqs
        ],
        "MillisBehindLatest": 0,
    }
    if continuation is not None:
        body["ContinuationSequenceNumber"] = continuation
    if children:
        body["ChildShards"] = [{"ShardId": c, "ParentShards": ["s-0"]} for c in children]
    return {"SubscribeToShardEvent": body}


def error_event(code: str) -> EventStreamError:
    return EventStreamError({"Error": {"Code": code, "Message": "no"}}, "SubscribeToShard")


class FakeEvents:
    def __init__(self, *items: Any) -> None:
        self.items = items
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        for item in self.items:
            if isinstance(item, Exception):
                raise item
            yield item

    def close(self) -> None:
        self.closed = True


def pages(*items: Any) -> list[Page]:
    return list(BotoSubscription("orders", "s-0", FakeEvents(*items)))


def test_events_become_pages_with_continuation_and_child_shards() -> None:
    first, last = pages(
        event("1", "2", continuation="2"), {}, event(continuation=None, children=("s-1", "s-2"))
    )
    assert [r.sequence_number for r in first.records] == ["1", "2"]
    assert first.records[0].shard_id == "s-0" and first.records[0].data == b"1"
    assert first.next_iterator == "2" and first.millis_behind_latest == 0
    assert last.next_iterator is None and last.child_shards == ("s-1", "s-2")
    (end,) = pages(event(continuation="9", children=("s-3",)))  # ChildShards: the end anyway
    assert end.next_iterator is None and end.child_shards == ("s-3",)


@pytest.mark.parametrize(
    ("item", "kind"),
    [
        (error_event("ResourceInUseException"), SubscriptionBusy),
        (error_event("LimitExceededException"), Throttled),
        (error_event("InternalFailureException"), SubscriptionBroken),
        (error_event("ResourceNotFoundException"), ResourceMissing),
        (ProtocolError("Connection broken"), SubscriptionBroken),
    ],
)
def test_a_stream_that_breaks_off_raises_the_kits_error(item: Exception, kind: type) -> None:
    with pytest.raises(kind) as caught:
        pages(event("1"), item)
    assert type(caught.value) is kind


def test_close_from_another_thread_ends_the_stream_as_broken() -> None:
    class TornDown(FakeEvents):
        def __iter__(self) -> Iterator[Any]:
            yield event("1")
            raise AttributeError("'NoneType' object has no attribute 'read'")  # urllib3, closed

    raw = TornDown()
    subscription = BotoSubscription("orders", "s-0", raw)
    stream = iter(subscription)
    next(stream)
    subscription.close()
    with pytest.raises(SubscriptionBroken, match="closed"):
        next(stream)
    assert raw.closed


class Client:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def subscribe_to_shard(self, **_: Any) -> Any:
        raise self.exc


def test_an_endpoint_without_subscribe_to_shard_fails_in_one_line() -> None:
    html = "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n"
    response: Any = {
        "Error": {"Code": "500", "Message": html},
        "ResponseMetadata": {"HTTPStatusCode": 500},
    }
    moto = ClientError(response, "SubscribeToShard")
    with pytest.raises(BackendError) as caught:
        BotoKinesis(Client(moto)).subscribe("orders", "arn", "s-0", StartAt.after("7"))
    assert str(caught.value) == (
        "Kinesis SubscribeToShard on orders/s-0 failed: HTTP 500; enhanced fan-out needs an "
        "endpoint that implements SubscribeToShard (moto does not): run the tap without --efo"
    )
    busy = ClientError(
        {"Error": {"Code": "ResourceInUseException", "Message": "busy"}}, "SubscribeToShard"
    )
    with pytest.raises(SubscriptionBusy):
        BotoKinesis(Client(busy)).subscribe("orders", "arn", "s-0", StartAt.after("7"))


def test_an_endpoint_that_says_not_implemented_is_unsupported_not_an_outage() -> None:
    """501 NotImplemented (the embedded backend for what moto lacks): no retry can help, so the
    error is also a ConfigError (``pik up`` gives the tap up instead of restarting it)."""
    response: Any = {
        "Error": {"Code": "NotImplemented", "Message": "no subscribe_to_shard"},
        "ResponseMetadata": {"HTTPStatusCode": 501},
    }
    with pytest.raises(Unsupported) as caught:
        BotoKinesis(Client(ClientError(response, "SubscribeToShard"))).subscribe(
            "orders", "arn", "s-0", StartAt.after("7")
        )
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, BackendError)
    assert "HTTP 501 NotImplemented: no subscribe_to_shard; enhanced fan-out" in str(caught.value)
