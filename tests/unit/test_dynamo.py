"""The DynamoDB edge (``infra.dynamo``): each AWS error code becomes the kit's error, Query/Scan
pages are followed, and batch calls send what DynamoDB left unprocessed again, with a bounded
backoff. A fake client stands in for boto3: moto never leaves items unprocessed."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from infra.dynamo import Backoff, batch_get, batch_write, dynamo_errors, paginate
from infra.errors import (
    BackendError,
    ConditionFailed,
    Conflict,
    KitError,
    ResourceMissing,
    Throttled,
    TransactionCanceled,
)

TABLE = "pik-things"


def client_error(code: str, message: str = "", **extra: Any) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, **extra}, "PutItem")


def raised(exc: BaseException, operation: str = "PutItem") -> KitError:
    with pytest.raises(KitError) as info, dynamo_errors(TABLE, operation):
        raise exc
    assert info.value.__cause__ is exc
    return info.value


def test_a_missing_table_says_which_and_what_to_run() -> None:
    error = raised(client_error("ResourceNotFoundException", "Requested resource not found"))
    assert type(error) is ResourceMissing
    assert str(error) == (
        f"DynamoDB PutItem on {TABLE}: table does not exist (run `pik bootstrap`)"
    )
    assert (error.service, error.code) == ("dynamodb", "ResourceNotFoundException")


@pytest.mark.parametrize(
    "code",
    ["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"],
)
def test_throttling_codes_are_throttled(code: str) -> None:
    error = raised(client_error(code, "slow down"), "Query")
    assert type(error) is Throttled and isinstance(error, BackendError)
    assert str(error) == f"DynamoDB Query on {TABLE}: throttled ({code}): slow down"
    assert error.code == code


def test_a_failed_condition_carries_the_stored_item() -> None:
    stored = {"pk": {"S": "a"}, "version": {"N": "3"}}
    error = raised(client_error("ConditionalCheckFailedException", "failed", Item=stored))
    assert type(error) is ConditionFailed and isinstance(error, Conflict)
    assert error.item == stored
    assert TABLE in str(error) and "PutItem" in str(error)
    assert raised(client_error("ConditionalCheckFailedException")).item is None  # type: ignore[attr-defined]


def test_a_canceled_transaction_carries_its_reasons() -> None:
    reasons = [{"Code": "None"}, {"Code": "ConditionalCheckFailed", "Item": {"pk": {"S": "b"}}}]
    error = raised(
        client_error("TransactionCanceledException", "canceled", CancellationReasons=reasons),
        "TransactWriteItems",
    )
    assert type(error) is TransactionCanceled
    assert error.reasons == reasons
    assert "None, ConditionalCheckFailed" in str(error)


def test_other_codes_are_backend_errors_with_aws_words() -> None:
    message = "Member must have length less than or equal to 100"
    error = raised(client_error("ValidationException", message), "TransactWriteItems")
    assert type(error) is BackendError
    assert str(error) == f"DynamoDB TransactWriteItems on {TABLE}: ValidationException: {message}"
    assert (error.code, error.detail) == ("ValidationException", message)


def test_network_errors_are_backend_errors() -> None:
    error = raised(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "GetItem")
    assert type(error) is BackendError
    assert str(error).startswith(f"DynamoDB GetItem on {TABLE}: Could not connect")
    assert error.code == "EndpointConnectionError"


def test_other_exceptions_pass_through() -> None:
    with pytest.raises(KeyError), dynamo_errors(TABLE, "GetItem"):
        raise KeyError("Item")


class FakeDynamo:
    """Answers from scripted responses and records every request."""

    def __init__(self, answers: list[dict[str, Any] | Exception]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _answer(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((name, request))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def query(self, **request: Any) -> dict[str, Any]:
        return self._answer("query", request)

    def scan(self, **request: Any) -> dict[str, Any]:
        return self._answer("scan", request)

    def batch_write_item(self, **request: Any) -> dict[str, Any]:
        return self._answer("batch_write_item", request)

    def batch_get_item(self, **request: Any) -> dict[str, Any]:
        return self._answer("batch_get_item", request)


def key(n: int) -> dict[str, Any]:
    return {"pk": {"S": f"k{n}"}}


@pytest.mark.parametrize("operation", ["Query", "Scan"])
def test_paginate_follows_last_evaluated_key(operation: str) -> None:
    fake = FakeDynamo(
        [
            {"Items": [key(1)], "LastEvaluatedKey": key(1)},
            {"Items": [key(2)], "LastEvaluatedKey": key(2)},
            {"Items": []},
        ]
    )
    pages = list(paginate(fake, operation, TABLE, IndexName="by_x", Limit=1))  # type: ignore[arg-type]
    assert [p["Items"] for p in pages] == [[key(1)], [key(2)], []]
    assert {name for name, _ in fake.calls} == {operation.lower()}
    starts = [request.get("ExclusiveStartKey") for _, request in fake.calls]
    assert starts == [None, key(1), key(2)]
    assert all(r["TableName"] == TABLE and r["IndexName"] == "by_x" for _, r in fake.calls)


def test_paginate_starts_where_asked_and_stops_when_the_caller_does() -> None:
    fake = FakeDynamo([{"Items": [key(5)], "LastEvaluatedKey": key(5)}])
    first = next(iter(paginate(fake, "Query", TABLE, ExclusiveStartKey=key(4))))
    assert first["Items"] == [key(5)] and len(fake.calls) == 1
    assert fake.calls[0][1]["ExclusiveStartKey"] == key(4)


def test_paginate_maps_errors_of_later_pages() -> None:
    fake = FakeDynamo(
        [{"Items": [], "LastEvaluatedKey": key(1)}, client_error("ResourceNotFoundException")]
    )
    with pytest.raises(ResourceMissing, match=f"DynamoDB Query on {TABLE}"):
        list(paginate(fake, "Query", TABLE))


def puts(n: int) -> list[dict[str, Any]]:
    return [{"PutRequest": {"Item": key(i)}} for i in range(n)]


def test_batch_write_sends_25_a_call_and_retries_the_unprocessed() -> None:
    requests = puts(30)
    fake = FakeDynamo(
        [
            {"UnprocessedItems": {TABLE: requests[20:25]}},
            {"UnprocessedItems": {TABLE: requests[24:25]}},
            {"UnprocessedItems": {}},
            {},
        ]
    )
    sleeps: list[float] = []
    backoff = Backoff(base_s=0.1, cap_s=0.15, retries=3)
    batch_write(fake, TABLE, requests, backoff=backoff, sleep=sleeps.append)
    sent = [r["RequestItems"][TABLE] for _, r in fake.calls]
    assert sent == [requests[:25], requests[20:25], requests[24:25], requests[25:]]
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.15 and 0 <= sleeps[1] <= 0.15  # 0.1 * 2**n, capped at 0.15


def test_batch_write_gives_up_after_its_retries() -> None:
    stuck = {"UnprocessedItems": {TABLE: puts(1)}}
    fake = FakeDynamo([stuck] * 4)
    sleeps: list[float] = []
    with pytest.raises(Throttled, match=f"BatchWriteItem on {TABLE}.*1 still unprocessed"):
        batch_write(fake, TABLE, puts(3), backoff=Backoff(retries=3), sleep=sleeps.append)
    assert len(fake.calls) == 4 and len(sleeps) == 3


def test_batch_write_maps_errors() -> None:
    fake = FakeDynamo([client_error("ProvisionedThroughputExceededException")])
    with pytest.raises(Throttled, match=f"DynamoDB BatchWriteItem on {TABLE}"):
        batch_write(fake, TABLE, puts(1))


def test_batch_get_sends_100_keys_a_call_with_options_and_retries_the_unprocessed() -> None:
    keys = [key(i) for i in range(130)]
    fake = FakeDynamo(
        [
            {"Responses": {TABLE: keys[:90]}, "UnprocessedKeys": {TABLE: {"Keys": keys[90:100]}}},
            {"Responses": {TABLE: keys[90:100]}},
            {"Responses": {TABLE: keys[100:]}},
        ]
    )
    sleeps: list[float] = []
    found = batch_get(fake, TABLE, keys, ConsistentRead=True, sleep=sleeps.append)
    assert sorted(found, key=str) == sorted(keys, key=str)
    asked = [r["RequestItems"][TABLE] for _, r in fake.calls]
    assert [len(a["Keys"]) for a in asked] == [100, 10, 30]
    assert all(a["ConsistentRead"] is True for a in asked)
    assert len(sleeps) == 1


def test_batch_get_gives_up_after_its_retries() -> None:
    stuck = {"Responses": {}, "UnprocessedKeys": {TABLE: {"Keys": [key(1)]}}}
    fake = FakeDynamo([stuck] * 3)
    with pytest.raises(Throttled, match=f"BatchGetItem on {TABLE}"):
        batch_get(fake, TABLE, [key(1)], backoff=Backoff(retries=2), sleep=lambda _: None)
    assert len(fake.calls) == 3


def test_backoff_grows_exponentially_to_its_cap_with_full_jitter() -> None:
    backoff = Backoff(base_s=0.02, cap_s=1.0)
    ceilings = [backoff.delay(n, rng=lambda: 1.0) for n in range(1, 9)]
    assert ceilings == [min(1.0, 0.02 * 2**n) for n in range(1, 9)]
    assert backoff.delay(5, rng=lambda: 0.0) == 0.0
