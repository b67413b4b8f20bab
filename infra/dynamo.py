"""DynamoDB at the adapter edge: one error mapper, paging, and batch calls that finish.

Every DynamoDB adapter uses these instead of catching botocore itself::

    from infra.dynamo import batch_get, batch_write, dynamo_errors, paginate
    from infra.errors import ConditionFailed

    with dynamo_errors(self.table, "GetItem"):              # ClientError -> KitError
        out = self._ddb.get_item(TableName=self.table, Key=key)

    try:
        with dynamo_errors(self.table, "PutItem"):
            self._ddb.put_item(..., ConditionExpression=..., ReturnValuesOnConditionCheckFailure="ALL_OLD")
    except ConditionFailed as exc:                           # exc.item: the stored item (typed)
        ...

    for page in paginate(self._ddb, "Query", self.table, KeyConditionExpression=...):
        page["Items"], page.get("ScannedCount"), page.get("LastEvaluatedKey")

    items = batch_get(self._ddb, self.table, keys, ConsistentRead=True)   # raw typed items
    batch_write(self._ddb, self.table, [{"PutRequest": {"Item": ...}}, ...])

What ``dynamo_errors`` raises, by AWS code (the table and the operation are in every message;
the full table is in ``infra.aws_errors``):

* ``ResourceNotFoundException`` → ``ResourceMissing`` ("... table does not exist (run `pik
  bootstrap`)");
* ``ProvisionedThroughputExceededException``, ``ThrottlingException``, ``RequestLimitExceeded``
  (after botocore's own retries) → ``Throttled``;
* ``ConditionalCheckFailedException`` → ``ConditionFailed`` (``item``);
* ``TransactionCanceledException`` → ``TransactionCanceled`` (``reasons``);
* any other code, and ``BotoCoreError`` (network, timeouts) → ``BackendError`` (``code``,
  ``detail``: AWS's message, e.g. to tell a ``ValidationException`` apart).

``batch_get`` / ``batch_write`` send at most ``BATCH_GET_MAX_KEYS`` / ``BATCH_WRITE_MAX_ITEMS``
per call and send what DynamoDB left unprocessed again, after a bounded exponential backoff with
full jitter (``Backoff``); what is still unprocessed after ``Backoff.retries`` retries raises
``Throttled``. Keys given to ``batch_get`` must be distinct (DynamoDB refuses repeated keys).

The helpers' client parameter is named ``client`` on purpose: the least-privilege check
(``tests/integration/test_template_policies.py``) counts ``paginate(self._ddb, "Query", ...)``,
``batch_get(...)`` and ``batch_write(...)`` as calls of their caller, on the caller's table.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

from infra.aws_errors import map_aws_errors
from infra.errors import Throttled

__all__ = [
    "BATCH_GET_MAX_KEYS",
    "BATCH_WRITE_MAX_ITEMS",
    "Backoff",
    "batch_get",
    "batch_write",
    "dynamo_errors",
    "paginate",
]

BATCH_WRITE_MAX_ITEMS = 25
BATCH_GET_MAX_KEYS = 100

Item = dict[str, Any]


def dynamo_errors(table: str, operation: str) -> AbstractContextManager[None]:
    """Map botocore errors raised in the block to the kit's, naming ``table`` and ``operation``
    (``"UpdateItem"``, or a more telling ``"UpdateItem (renew lease)"``)."""
    return map_aws_errors("dynamodb", table, operation)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry ``retries`` times; before retry ``n`` (1, 2, ...) sleep a random time in
    ``[0, min(cap_s, base_s * 2**n))`` ("full jitter": retrying writers spread out)."""

    base_s: float = 0.02
    cap_s: float = 1.0
    retries: int = 8

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        return min(self.cap_s, self.base_s * 2**attempt) * rng()


DEFAULT_BACKOFF = Backoff()


def paginate(
    client: Any, operation: Literal["Query", "Scan"], table: str, **request: Any
) -> Iterator[dict[str, Any]]:
    """Each response page of a Query or Scan on ``table``, following ``LastEvaluatedKey`` (from
    ``ExclusiveStartKey`` when given). Stop iterating to stop reading."""
    call = client.query if operation == "Query" else client.scan
    request = {**request, "TableName": table}
    while True:
        with dynamo_errors(table, operation):
            page: dict[str, Any] = call(**request)
        yield page
        start = page.get("LastEvaluatedKey")
        if not start:
            return
        request["ExclusiveStartKey"] = start


def _chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _exhausted(table: str, operation: str, left: int, backoff: Backoff) -> Throttled:
    return Throttled(
        f"DynamoDB {operation} on {table}: throttled ({left} still unprocessed after "
        f"{backoff.retries} retries)",
        service="dynamodb",
        code="UnprocessedItems",
    )


def batch_write(
    client: Any,
    table: str,
    requests: Sequence[Mapping[str, Any]],
    *,
    backoff: Backoff = DEFAULT_BACKOFF,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Write ``requests`` (``{"PutRequest": ...}`` / ``{"DeleteRequest": ...}``) with
    BatchWriteItem, 25 a call, until DynamoDB has processed every one."""
    for chunk in _chunks(requests, BATCH_WRITE_MAX_ITEMS):
        attempt = 0
        while chunk:
            with dynamo_errors(table, "BatchWriteItem"):
                out = client.batch_write_item(RequestItems={table: chunk})
            chunk = out.get("UnprocessedItems", {}).get(table, [])
            if chunk:
                attempt += 1
                if attempt > backoff.retries:
                    raise _exhausted(table, "BatchWriteItem", len(chunk), backoff)
                sleep(backoff.delay(attempt))


def batch_get(
    client: Any,
    table: str,
    keys: Sequence[Mapping[str, Any]],
    *,
    backoff: Backoff = DEFAULT_BACKOFF,
    sleep: Callable[[float], None] = time.sleep,
    **options: Any,
) -> list[Item]:
    """The items (typed attribute values, in no particular order) of those of ``keys`` that
    exist, by BatchGetItem, 100 keys a call. ``options`` go with the keys: ``ConsistentRead``,
    ``ProjectionExpression``, ``ExpressionAttributeNames``."""
    found: list[Item] = []
    for chunk in _chunks(keys, BATCH_GET_MAX_KEYS):
        attempt = 0
        while chunk:
            with dynamo_errors(table, "BatchGetItem"):
                out = client.batch_get_item(RequestItems={table: {**options, "Keys": chunk}})
            found += out.get("Responses", {}).get(table, [])
            chunk = out.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
            if chunk:
                attempt += 1
                if attempt > backoff.retries:
                    raise _exhausted(table, "BatchGetItem", len(chunk), backoff)
                sleep(backoff.delay(attempt))
    return found
