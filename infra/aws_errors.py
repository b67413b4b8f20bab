"""botocore errors → the kit's errors (``infra.errors``), in one place, by AWS error code.

``map_aws_errors(service, resource, operation)`` is a context manager, like httpx's
``map_httpcore_exceptions``: a ``ClientError`` or ``BotoCoreError`` raised inside leaves it as a
``KitError`` naming the service, the resource and the operation, chained (``from``) to the
original. Anything else passes through untouched. DynamoDB adapters use the shorthand
``infra.dynamo.dynamo_errors(table, operation)``.

======================================  =====================  =================================
AWS error code                          raised                 message
======================================  =====================  =================================
a ``missing`` code (the table/bucket)   ``ResourceMissing``    ``<S> <op> on <r>: table does not
                                                               exist (run `pik bootstrap`)``
a ``throttled`` code                    ``Throttled``          ``<S> <op> on <r>: throttled
                                                               (<code>): <AWS message>``
a ``condition`` code                    ``ConditionFailed``    (``item``: the stored item, if
                                                               the call asked for it)
``TransactionCanceledException``        ``TransactionCanceled`` (``reasons``, per operation)
any other code                          ``BackendError``       ``<S> <op> on <r>: <code>: <msg>``
``BotoCoreError`` (network, timeout)    ``BackendError``       ``<S> <op> on <r>: <error>``
======================================  =====================  =================================

Every ``BackendError`` carries ``service``, ``code`` (AWS's code, or the botocore class name) and
``detail`` (AWS's message).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from infra.errors import (
    BackendError,
    ConditionFailed,
    KitError,
    ResourceMissing,
    Throttled,
    TransactionCanceled,
)

__all__ = ["SERVICES", "ServiceCodes", "map_aws_errors", "translate"]


@dataclass(frozen=True, slots=True)
class ServiceCodes:
    label: str  # how messages name the service
    noun: str  # what a missing resource is
    missing: frozenset[str]
    throttled: frozenset[str]
    condition: frozenset[str]


SERVICES = {
    "dynamodb": ServiceCodes(
        label="DynamoDB",
        noun="table",
        missing=frozenset({"ResourceNotFoundException"}),
        throttled=frozenset(
            {
                "ProvisionedThroughputExceededException",
                "ThrottlingException",
                "RequestLimitExceeded",
            }
        ),
        condition=frozenset({"ConditionalCheckFailedException"}),
    ),
    "s3": ServiceCodes(
        label="S3",
        noun="bucket",
        missing=frozenset({"NoSuchBucket"}),
        throttled=frozenset({"SlowDown", "503"}),
        # 412: the key exists (If-None-Match); 409: another conditional write of it is under way
        condition=frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}),
    ),
    "sqs": ServiceCodes(
        label="SQS",
        noun="queue",
        missing=frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}),
        throttled=frozenset({"RequestThrottled", "ThrottlingException"}),
        condition=frozenset(),
    ),
    "kinesis": ServiceCodes(
        label="Kinesis",
        noun="stream",
        missing=frozenset({"ResourceNotFoundException"}),
        throttled=frozenset({"ProvisionedThroughputExceededException", "LimitExceededException"}),
        condition=frozenset(),
    ),
}

TRANSACTION_CANCELED = "TransactionCanceledException"


def translate(
    exc: ClientError | BotoCoreError, service: str, resource: str, operation: str
) -> KitError:
    """The kit's error for one botocore error (what ``map_aws_errors`` raises)."""
    codes = SERVICES[service]
    where = f"{codes.label} {operation} on {resource}"
    if isinstance(exc, BotoCoreError):
        return BackendError(f"{where}: {exc}", service=service, code=type(exc).__name__)
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    detail = str(error.get("Message", ""))
    if code in codes.missing:
        return ResourceMissing(
            f"{where}: {codes.noun} does not exist (run `pik bootstrap`)",
            service=service,
            code=code,
            detail=detail,
        )
    if code in codes.throttled:
        return Throttled(
            f"{where}: throttled ({code})" + (f": {detail}" if detail else ""),
            service=service,
            code=code,
            detail=detail,
        )
    if code in codes.condition:
        item = exc.response.get("Item")
        return ConditionFailed(
            f"{where}: condition failed", item=item if isinstance(item, dict) else None, code=code
        )
    if service == "dynamodb" and code == TRANSACTION_CANCELED:
        reasons = exc.response.get("CancellationReasons") or []
        summary = ", ".join(str(r.get("Code", "None")) for r in reasons)
        return TransactionCanceled(f"{where}: transaction canceled [{summary}]", reasons=reasons)
    return BackendError(
        f"{where}: {code}" + (f": {detail}" if detail else ""),
        service=service,
        code=code,
        detail=detail,
    )


@contextmanager
def map_aws_errors(service: str, resource: str, operation: str) -> Iterator[None]:
    """Raise what ``translate`` makes of a botocore error in the block, ``from`` the original."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, service, resource, operation) from exc
