"""``infra.aws_errors`` for the services other than DynamoDB (``test_dynamo.py`` covers that
one): each service's own codes for a missing resource, throttling and failed conditions."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from infra.aws_errors import map_aws_errors
from infra.errors import BackendError, ConditionFailed, KitError, ResourceMissing, Throttled


@pytest.mark.parametrize(
    ("service", "code", "kind"),
    [
        ("s3", "NoSuchBucket", ResourceMissing),
        ("s3", "SlowDown", Throttled),
        ("s3", "PreconditionFailed", ConditionFailed),
        ("s3", "ConditionalRequestConflict", ConditionFailed),
        ("s3", "AccessDenied", BackendError),
        ("sqs", "AWS.SimpleQueueService.NonExistentQueue", ResourceMissing),
        ("sqs", "QueueDoesNotExist", ResourceMissing),
        ("sqs", "RequestThrottled", Throttled),
        ("kinesis", "ResourceNotFoundException", ResourceMissing),
        ("kinesis", "LimitExceededException", Throttled),
        ("kinesis", "ConditionalCheckFailedException", BackendError),  # a DynamoDB code only
    ],
)
def test_each_service_code_becomes_its_kit_error(
    service: str, code: str, kind: type[KitError]
) -> None:
    original = ClientError({"Error": {"Code": code, "Message": "words"}}, "Op")
    with pytest.raises(KitError) as info, map_aws_errors(service, "thing", "Op"):
        raise original
    assert type(info.value) is kind
    label = {"s3": "S3", "sqs": "SQS", "kinesis": "Kinesis"}[service]
    assert str(info.value).startswith(f"{label} Op on thing: ")
    assert info.value.__cause__ is original
    assert getattr(info.value, "code", None) == code
