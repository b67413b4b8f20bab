"""A fault-injecting layer for the kit's boto3 clients: botocore event hooks, no proxy.

``FaultInjector.install(client)`` registers a ``before-send`` hook on one boto3 client (S3,
DynamoDB, SQS, Kinesis); each HTTP *attempt* (botocore retries count) then fails, with
probability ``FaultPlan.rate``, with one of these kinds:

``throttle``
    refused before it reaches the service: S3 ``503 SlowDown``, DynamoDB/SQS
    ``ThrottlingException``, Kinesis ``ProvisionedThroughputExceededException``.
``server_error``
    ``500 InternalError`` / ``InternalServerError`` / ``InternalFailure``; not applied.
``read_timeout``
    the request **is sent and applied**, then the answer is lost (``ReadTimeoutError``): the
    nastiest kind, since the caller cannot tell a write that happened from one that did not.
``connection_reset``
    the connection drops before the request is sent (``ConnectionClosedError``); not applied.

Every attempt seen and every fault injected is counted per service, operation and kind
(``FaultInjector.report()``), so a run can say what share it injected. botocore's own retry
handler sees these exactly as it would see the real thing; whether a fault escapes it depends on
the client's ``max_attempts``.

Used by the reliability tests and ``bench/reliability.py``; nothing in the kit's own paths
imports it.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError
from botocore.httpsession import URLLib3Session

SERVICES = ("s3", "dynamodb", "sqs", "kinesis")


class FaultKind(StrEnum):
    THROTTLE = "throttle"
    SERVER_ERROR = "server_error"
    READ_TIMEOUT = "read_timeout"
    CONNECTION_RESET = "connection_reset"


# (HTTP status, error code) per service and kind; codes are AWS's own.
_ERRORS: dict[str, dict[FaultKind, tuple[int, str]]] = {
    "s3": {FaultKind.THROTTLE: (503, "SlowDown"), FaultKind.SERVER_ERROR: (500, "InternalError")},
    "dynamodb": {
        FaultKind.THROTTLE: (400, "ThrottlingException"),
        FaultKind.SERVER_ERROR: (500, "InternalServerError"),
    },
    "sqs": {
        FaultKind.THROTTLE: (400, "ThrottlingException"),
        FaultKind.SERVER_ERROR: (500, "InternalError"),
    },
    "kinesis": {
        FaultKind.THROTTLE: (400, "ProvisionedThroughputExceededException"),
        FaultKind.SERVER_ERROR: (500, "InternalFailure"),
    },
}
_JSON_NAMESPACE = {
    "dynamodb": "com.amazonaws.dynamodb.v20120810",
    "sqs": "com.amazonaws.sqs",
    "kinesis": "com.amazonaws.kinesis",
}


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What to inject: the share of attempts that fail, which kinds, on which services.

    ``operations`` narrows it to some API operations (``{"PutObject", "TransactWriteItems"}``);
    None means every operation of the chosen services.
    """

    rate: float = 0.15
    kinds: tuple[FaultKind, ...] = tuple(FaultKind)
    services: frozenset[str] = frozenset(SERVICES)
    operations: frozenset[str] | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within [0, 1], got {self.rate}")
        if not self.kinds:
            raise ValueError("a fault plan needs at least one kind")
        unknown = sorted(set(self.services) - set(SERVICES))
        if unknown:
            raise ValueError(f"unknown services {unknown} (known: {', '.join(SERVICES)})")


@dataclass(slots=True)
class FaultCounts:
    """Attempts seen and faults injected: by service, by kind, by (service, operation, kind)."""

    attempts: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    detail: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        attempts, injected = sum(self.attempts.values()), sum(self.injected.values())
        return {
            "attempts": attempts,
            "injected": injected,
            "share": round(injected / attempts, 4) if attempts else 0.0,
            "by_kind": {k.value: self.kinds[k.value] for k in FaultKind},
            "by_service": {
                s: {"attempts": self.attempts[s], "injected": self.injected[s]}
                for s in sorted(self.attempts)
            },
            "by_operation": {
                f"{s}.{op}.{kind}": n for (s, op, kind), n in sorted(self.detail.items())
            },
        }


class _Body:
    """The ``raw`` of a made-up ``AWSResponse``: botocore only calls ``stream()``."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def error_response(service: str, kind: FaultKind, url: str) -> AWSResponse:
    """The HTTP answer AWS gives for ``kind`` on ``service``, in that service's protocol."""
    status, code = _ERRORS[service][kind]
    message = f"injected fault: {kind.value}"
    headers: dict[str, str]
    if service == "s3":
        body = (
            f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>{message}</Message><RequestId>pik-faults</RequestId></Error>"
        ).encode()
        headers = {"Content-Type": "application/xml"}
    else:
        error = {"__type": f"{_JSON_NAMESPACE[service]}#{code}", "message": message}
        body = json.dumps(error).encode()
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "pik-faults"}
        if service == "sqs":  # awsQueryCompatible: botocore reads the code from this header
            headers["x-amzn-query-error"] = f"{code};{'Sender' if status < 500 else 'Receiver'}"
    return AWSResponse(url, status, cast(Any, headers), _Body(body))


class FaultInjector:
    """Injects faults into the boto3 clients it is installed on, and counts them.

    Thread-safe: one injector may serve every client of a process. ``paused()`` stops injecting
    for a block (bootstrap, verification) without unhooking.
    """

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self.counts = FaultCounts()
        self._rng = random.Random(plan.seed)
        self._lock = threading.Lock()
        self._paused = 0
        self._http: URLLib3Session | None = None

    # -- wiring ---------------------------------------------------------------------------------
    def install(self, client: Any) -> Any:
        """Hook ``client`` (a boto3 client); returns it for chaining. Installing twice is a no-op."""
        service = client.meta.service_model.service_id.hyphenize()
        if service not in SERVICES:
            raise ValueError(f"cannot inject faults into {service} (known: {', '.join(SERVICES)})")
        client.meta.events.register(
            f"before-send.{service}", self._before_send, unique_id=f"pik-faults-{id(self)}"
        )
        return client

    def install_all(self, clients: Iterable[Any]) -> None:
        for client in clients:
            self.install(client)

    @contextmanager
    def paused(self) -> Iterator[None]:
        with self._lock:
            self._paused += 1
        try:
            yield
        finally:
            with self._lock:
                self._paused -= 1

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {"rate": self.plan.rate, **self.counts.to_json()}

    # -- the hook -------------------------------------------------------------------------------
    def _choose(self, service: str, operation: str) -> FaultKind | None:
        with self._lock:
            if self._paused:
                return None
            self.counts.attempts[service] += 1
            plan = self.plan
            wanted = service in plan.services and (
                plan.operations is None or operation in plan.operations
            )
            if not wanted or self._rng.random() >= plan.rate:
                return None
            kind = self._rng.choice(plan.kinds)
            self.counts.injected[service] += 1
            self.counts.kinds[kind.value] += 1
            self.counts.detail[(service, operation, kind.value)] += 1
            return kind

    def _before_send(
        self, request: AWSPreparedRequest, event_name: str, **kwargs: Any
    ) -> AWSResponse | None:
        _, service, operation = event_name.split(".", 2)
        kind = self._choose(service, operation)
        if kind is None:
            return None
        if kind is FaultKind.CONNECTION_RESET:
            raise ConnectionClosedError(endpoint_url=request.url)
        if kind is FaultKind.READ_TIMEOUT:
            self._send_and_drop(request)
            raise ReadTimeoutError(endpoint_url=request.url)
        return error_response(service, kind, request.url)

    def _send_and_drop(self, request: AWSPreparedRequest) -> None:
        """Deliver the request for real (the service applies it), then forget the answer."""
        with self._lock:
            if self._http is None:
                self._http = URLLib3Session()
            http = self._http
        try:
            http.send(request).content  # noqa: B018 - read it all, as a real client would
        finally:
            request.reset_stream()
