"""The work queue port (``WorkQueue``) for the processor, and its SQS adapter."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from infra.aws_errors import map_aws_errors

SQS_MAX_BATCH = 10
SQS_MAX_WAIT_S = 20
SQS_MAX_VISIBILITY_S = 43_200

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class QueueMessage:
    message_id: str
    receipt: str
    body: str
    receive_count: int


class WorkQueue(Protocol):
    def receive(self, max_messages: int, wait_s: int) -> list[QueueMessage]: ...

    def delete(self, messages: Sequence[QueueMessage]) -> None: ...

    def retry_later(self, messages: Sequence[QueueMessage], delay_s: int) -> None:
        """Make failed messages visible again after ``delay_s`` (they count another receive)."""
        ...


def queue_url(sqs_client: Any, name: str) -> str:
    """The URL of the queue called ``name``; ``ResourceMissing`` if there is none."""
    with map_aws_errors("sqs", name, "GetQueueUrl"):
        url: str = sqs_client.get_queue_url(QueueName=name)["QueueUrl"]
    return url


class SqsWorkQueue:
    def __init__(self, sqs_client: Any, queue_url: str, visibility_timeout_s: int) -> None:
        self._sqs = sqs_client
        self.url = queue_url
        self._visibility = visibility_timeout_s

    def _call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        operation = "".join(
            word.title() for word in op.split("_")
        )  # receive_message: ReceiveMessage
        with map_aws_errors("sqs", self.url, operation):
            out: dict[str, Any] = getattr(self._sqs, op)(QueueUrl=self.url, **kwargs)
        return out

    def receive(self, max_messages: int, wait_s: int) -> list[QueueMessage]:
        out = self._call(
            "receive_message",
            MaxNumberOfMessages=min(max_messages, SQS_MAX_BATCH),
            WaitTimeSeconds=min(wait_s, SQS_MAX_WAIT_S),
            VisibilityTimeout=self._visibility,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [
            QueueMessage(
                message_id=m["MessageId"],
                receipt=m["ReceiptHandle"],
                body=m["Body"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
            )
            for m in out.get("Messages", [])
        ]

    def delete(self, messages: Sequence[QueueMessage]) -> None:
        for start in range(0, len(messages), SQS_MAX_BATCH):
            chunk = messages[start : start + SQS_MAX_BATCH]
            out = self._call(
                "delete_message_batch",
                Entries=[{"Id": str(i), "ReceiptHandle": m.receipt} for i, m in enumerate(chunk)],
            )
            for failure in out.get("Failed", []):  # it will be received again: at least once
                log.warning("delete failed", extra={"failure": failure})

    def retry_later(self, messages: Sequence[QueueMessage], delay_s: int) -> None:
        delay = max(0, min(delay_s, SQS_MAX_VISIBILITY_S))
        for start in range(0, len(messages), SQS_MAX_BATCH):
            chunk = messages[start : start + SQS_MAX_BATCH]
            self._call(
                "change_message_visibility_batch",
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m.receipt, "VisibilityTimeout": delay}
                    for i, m in enumerate(chunk)
                ],
            )
