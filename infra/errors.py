"""The kit's error tree. Nothing above ``infra`` sees botocore; adapters translate at the edge
(``infra.dynamo.dynamo_errors`` for DynamoDB, ``infra.aws_errors.map_aws_errors`` for others).
``KitError`` and ``ConfigError`` live in ``schemas.errors`` (``schemas`` raises them too).

KitError
 ├── ConfigError            bad settings, config file or schema folder (operator must fix)
 │    ├── RegistryError     (schemas.registry) the registry folder is malformed
 │    └── CompatibilityError (schemas.compatibility) a schema or the modes file is unreadable
 ├── BackendError           an AWS call failed after retries (retrying later may work)
 │    ├── ResourceMissing   a bucket, table, queue or stream does not exist (run bootstrap)
 │    ├── Throttled         AWS refused for rate (throughput, request limits, unprocessed items)
 │    └── Unsupported       the endpoint lacks the operation asked for (also a ConfigError:
 │                          retrying cannot help, e.g. enhanced fan-out on moto)
 ├── NotFound               the thing asked for (event, replay, ...) does not exist
 └── Conflict               a write refused by what is stored (a schema it is incompatible with)
      ├── ConditionFailed   a conditional write found the stored item otherwise (``item``)
      └── TransactionCanceled  a transaction refused; ``reasons`` says why, per operation
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from schemas.errors import ConfigError, KitError

__all__ = [
    "BackendError",
    "ConditionFailed",
    "ConfigError",
    "Conflict",
    "KitError",
    "NotFound",
    "ResourceMissing",
    "Throttled",
    "TransactionCanceled",
    "Unsupported",
]


class BackendError(KitError):
    """``service`` and ``code`` (AWS's error code) let a caller decide; ``detail`` is AWS's own
    message, when it sent one."""

    def __init__(
        self, message: str, *, service: str = "", code: str = "", detail: str = ""
    ) -> None:
        super().__init__(message)
        self.service = service
        self.code = code
        self.detail = detail


class ResourceMissing(BackendError):
    pass


class Throttled(BackendError):
    pass


class Unsupported(BackendError, ConfigError):
    """The endpoint lacks the operation (retrying cannot help: a ConfigError too)."""


class NotFound(KitError):
    pass


class Conflict(KitError):
    pass


class ConditionFailed(Conflict):
    """``item`` is the stored item as the backend returned it (DynamoDB's typed attribute values,
    with ``ReturnValuesOnConditionCheckFailure="ALL_OLD"``), or None when it sent none."""

    def __init__(
        self, message: str, *, item: Mapping[str, Any] | None = None, code: str = ""
    ) -> None:
        super().__init__(message)
        self.item = item
        self.code = code


class TransactionCanceled(Conflict):
    """``reasons``: DynamoDB's ``CancellationReasons``, one per operation of the transaction, in
    order (``{"Code": "ConditionalCheckFailed", "Item": {...}}``, ``{"Code": "None"}``, ...)."""

    def __init__(self, message: str, *, reasons: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.reasons = list(reasons)
