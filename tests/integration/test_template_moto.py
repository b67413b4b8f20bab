"""The expanded template, created as a stack on the embedded backend's CloudFormation (moto).

This proves that names, references and policies line up: every ``Ref``/``GetAtt``/``Sub``
resolves, the functions get the resource names the kit reads from its settings, the event
source mappings point at the stream and queue that exist, the roles' statements name the
ARNs of resources that exist, and the kit's own ``Bootstrap``, pointed at the stack's
resources, finds everything and creates nothing (a sidecar's ``pik up --aws`` can share them).

moto's CloudFormation needs ``moto[cloudformation]`` (a dev dependency: it pulls cfn-lint,
docker, openapi-spec-validator and more, which the kit's runtime does not want); without it the
tests here are skipped. moto cannot create every resource type the template uses: those are
listed in ``MOTO_CANNOT_CREATE`` and removed before the stack is created, and a reference to one
becomes a placeholder string; the list is checked, so it stays true as moto grows. The
template's other properties that moto accepts but does not apply are listed in
``MOTO_DOES_NOT_APPLY``.
"""

from __future__ import annotations

import ast
import io
import json
import re
import uuid
import warnings
import zipfile
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from infra.aws import AwsClients
from infra.local import EmbeddedAws
from infra.resources import Bootstrap, table_specs
from pik.settings import Settings
from tests.integration.test_template import ACCOUNT, REGION, expanded

pytest.importorskip("moto.cloudformation", reason="moto[cloudformation] is a dev dependency")

# Resource types of the template that moto 5.2's CloudFormation cannot create.
MOTO_CANNOT_CREATE = {
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Integration",
    "AWS::ApiGatewayV2::Route",
    "AWS::ApiGatewayV2::Stage",
    "AWS::CloudWatch::Alarm",
    "AWS::S3::BucketPolicy",
    "AWS::Kinesis::StreamConsumer",  # (only with UseEnhancedFanOut, not created here)
}
# Properties moto accepts in the template but does not apply to what it creates (checked below,
# so the list stays true); the translator-level tests (test_template.py) check them instead.
MOTO_DOES_NOT_APPLY = {
    "AWS::S3::Bucket": ("VersioningConfiguration", "PublicAccessBlockConfiguration",
                        "OwnershipControls"),
    "AWS::DynamoDB::Table": ("PointInTimeRecoverySpecification",),
    "AWS::IAM::Role": ("an Fn::If that chose AWS::NoValue in the statement list (kept as null)",),
}  # fmt: skip
CONFIGS = {
    "defaults": {},
    "processor-on": {"EnableProcessor": "true"},
}


def _unsupported(template: dict[str, Any]) -> set[str]:
    from moto.cloudformation.parsing import resource_class_from_type

    return {k for k, v in template["Resources"].items() if not resource_class_from_type(v["Type"])}


def without(template: dict[str, Any], gone: set[str]) -> dict[str, Any]:
    """``template`` less the resources in ``gone``; references to them become placeholders."""

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Ref"} and node["Ref"] in gone:
                return f"not-created-{node['Ref']}"
            if set(node) == {"Fn::GetAtt"} and node["Fn::GetAtt"][0] in gone:
                return f"not-created-{node['Fn::GetAtt'][0]}"
            if set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
                return {
                    "Fn::Sub": re.sub(
                        r"\$\{(\w+)(\.\w+)?\}",
                        lambda m: f"not-created-{m[1]}" if m[1] in gone else m[0],
                        node["Fn::Sub"],
                    )
                }
            return {k: fix(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    out = {k: fix(v) for k, v in template.items() if k != "Resources"}
    out["Resources"] = {k: fix(v) for k, v in template["Resources"].items() if k not in gone}
    for resource in out["Resources"].values():
        if resource.get("DependsOn") in gone:
            del resource["DependsOn"]
    return out


def _code_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pik/__init__.py", "")
    return buffer.getvalue()


class Stack:
    """One created stack: its outputs, resources by logical id, and clients to look."""

    def __init__(self, server: EmbeddedAws, overrides: dict[str, str]) -> None:
        self.endpoint = server.endpoint_url
        self.name = f"pik{uuid.uuid4().hex[:8]}"
        kw: dict[str, Any] = {
            "endpoint_url": self.endpoint,
            "region_name": REGION,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        self.client = lambda service: boto3.client(service, **kw)
        kinesis = self.client("kinesis")
        kinesis.create_stream(StreamName=f"{self.name}-orders", ShardCount=1)  # "existing"
        self.stream_arn = kinesis.describe_stream_summary(StreamName=f"{self.name}-orders")[
            "StreamDescriptionSummary"
        ]["StreamARN"]
        s3 = self.client("s3")
        s3.create_bucket(Bucket="pik-artifacts")
        s3.put_object(Bucket="pik-artifacts", Key="pik.zip", Body=_code_zip())
        self.params = {"StreamArn": self.stream_arn, **overrides}
        template = expanded(self.params)
        self.not_created = {template["Resources"][k]["Type"] for k in _unsupported(template)}
        cloudformation = self.client("cloudformation")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cloudformation.create_stack(
                StackName=self.name,
                TemplateBody=json.dumps(without(template, _unsupported(template))),
                Parameters=[
                    {"ParameterKey": k, "ParameterValue": v} for k, v in self.params.items()
                ],
                Capabilities=["CAPABILITY_IAM"],
            )
        [self.description] = cloudformation.describe_stacks(StackName=self.name)["Stacks"]
        summaries = cloudformation.list_stack_resources(StackName=self.name)
        self.physical = {
            r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
            for r in summaries["StackResourceSummaries"]
        }
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in self.description["Outputs"]}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def stack(request: pytest.FixtureRequest, aws_server: EmbeddedAws) -> Stack:
    return Stack(aws_server, CONFIGS[request.param])


def test_the_stack_is_created_with_every_resource_moto_supports(stack: Stack) -> None:
    assert stack.description["StackStatus"] == "CREATE_COMPLETE"
    assert stack.not_created <= MOTO_CANNOT_CREATE
    kinds = {r["ResourceType"] for r in _resources(stack)}
    assert {
        "AWS::S3::Bucket",
        "AWS::DynamoDB::Table",
        "AWS::SQS::Queue",
        "AWS::IAM::Role",
        "AWS::Lambda::Function",
        "AWS::Lambda::EventSourceMapping",
        "AWS::Lambda::Permission",
        "AWS::Logs::LogGroup",
        "AWS::CloudWatch::Dashboard",
    } <= kinds
    assert not kinds & MOTO_CANNOT_CREATE
    assert all(r["ResourceStatus"] == "CREATE_COMPLETE" for r in _resources(stack))


def _resources(stack: Stack) -> list[dict[str, Any]]:
    out = stack.client("cloudformation").list_stack_resources(StackName=stack.name)
    summaries: list[dict[str, Any]] = out["StackResourceSummaries"]
    return summaries


def test_tables_exist_with_their_indexes(stack: Stack) -> None:
    ddb = stack.client("dynamodb")
    for spec in table_specs(_settings(stack).names()):
        table = ddb.describe_table(TableName=spec["TableName"])["Table"]
        indexes = {i["IndexName"]: i["KeySchema"] for i in table.get("GlobalSecondaryIndexes", [])}
        assert indexes == {
            i["IndexName"]: i["KeySchema"] for i in spec.get("GlobalSecondaryIndexes", [])
        }
        assert table["KeySchema"] == spec["KeySchema"]


def _function(stack: Stack, logical: str) -> dict[str, Any]:
    config: dict[str, Any] = stack.client("lambda").get_function(
        FunctionName=stack.physical[logical]
    )["Configuration"]
    return config


def _settings(stack: Stack) -> Settings:
    """The settings the tap function builds from its environment, aimed at the embedded AWS."""
    env = _function(stack, "TapFunction")["Environment"]["Variables"]
    fields = {k.removeprefix("PIK_").lower(): v for k, v in env.items() if k.startswith("PIK_")}
    return Settings(endpoint_url=stack.endpoint, region=REGION, **fields)


def test_functions_get_the_names_of_the_resources_the_stack_created(stack: Stack) -> None:
    names = _settings(stack).names()
    assert names.bucket == stack.physical["RawBucket"] == stack.outputs["RawBucketName"]
    assert names.events_table == stack.physical["EventsTable"] == f"{stack.name}-events"
    assert names.replay_queue == f"{stack.name}-replay"
    assert stack.physical["ReplayQueue"].endswith(f"/{names.replay_queue}")
    assert stack.physical["ReplayDeadLetterQueue"].endswith(f"/{names.replay_dlq}")
    api = _function(stack, "ApiFunction")
    assert api["Handler"] == "pik.lambdas.api.handler"
    assert (
        api["Environment"]["Variables"]
        == _function(stack, "TapFunction")["Environment"]["Variables"]
    )
    for key in ("AWS_REGION", "PIK_BUCKET", "PIK_EVENTS_TABLE", "PIK_REPLAY_QUEUE"):
        assert f"{key}=" in stack.outputs["CliEnvironment"]


def test_what_moto_applies_and_what_it_does_not(stack: Stack) -> None:
    s3, ddb = stack.client("s3"), stack.client("dynamodb")
    bucket = stack.physical["RawBucket"]
    [rule] = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    table = ddb.describe_table(TableName=f"{stack.name}-events")["Table"]
    assert table["DeletionProtectionEnabled"] is True
    attrs = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.physical["ReplayQueue"], AttributeNames=["All"]
    )["Attributes"]
    assert attrs["VisibilityTimeout"] == "120" and attrs["SqsManagedSseEnabled"] == "true"
    # Not applied by moto (MOTO_DOES_NOT_APPLY): still unset on what it created.
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    with pytest.raises(s3.exceptions.ClientError):
        s3.get_public_access_block(Bucket=bucket)
    backups = ddb.describe_continuous_backups(TableName=f"{stack.name}-events")
    pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert pitr["PointInTimeRecoveryStatus"] == "DISABLED"


def test_bootstrap_on_the_stack_finds_everything_and_creates_nothing(stack: Stack) -> None:
    settings = _settings(stack)
    result = Bootstrap(AwsClients(settings.aws()), settings.names()).run(demo_stream=False)
    assert result["created"] == []
    # The same queue (moto names the host of a queue made by CloudFormation differently).
    assert (
        urlsplit(result["replay_queue_url"]).path == urlsplit(stack.outputs["ReplayQueueUrl"]).path
    )


def test_event_source_mappings_point_at_the_stream_and_the_queue(stack: Stack) -> None:
    mappings = stack.client("lambda").list_event_source_mappings()["EventSourceMappings"]
    by_function = {m["FunctionArn"].rsplit(":", 1)[-1]: m for m in mappings}
    tap = by_function[stack.physical["TapFunction"]]
    assert tap["EventSourceArn"] == stack.stream_arn
    assert tap["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert tap["BisectBatchOnFunctionError"] is True
    failures_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{stack.name}-tap-failures"
    assert tap["DestinationConfig"] == {"OnFailure": {"Destination": failures_arn}}
    processor = by_function.get(f"{stack.name}-processor")
    if stack.params.get("EnableProcessor") == "true":
        assert processor is not None
        assert processor["EventSourceArn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:{stack.name}-replay"
        assert processor["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    else:
        assert processor is None


def _existing_arns(stack: Stack) -> set[str]:
    names = _settings(stack).names()
    ddb, sqs = stack.client("dynamodb"), stack.client("sqs")
    arns = {f"arn:aws:s3:::{names.bucket}", stack.stream_arn}
    for table in (names.events_table, names.replay_jobs_table, names.aggregates_table):
        arns.add(ddb.describe_table(TableName=table)["Table"]["TableArn"])
    for logical in ("ReplayQueue", "ReplayDeadLetterQueue", "TapFailureQueue"):
        attrs = sqs.get_queue_attributes(
            QueueUrl=stack.physical[logical], AttributeNames=["QueueArn"]
        )
        arns.add(attrs["Attributes"]["QueueArn"])
    return arns


def test_role_statements_name_resources_that_exist(stack: Stack) -> None:
    iam = stack.client("iam")
    existing = _existing_arns(stack)
    log_group = re.compile(
        rf"^arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{stack.name}-(\w+):\*$"
    )
    roles = {k: v for k, v in stack.physical.items() if k.endswith("FunctionRole")}
    expected_roles = {"ApiFunctionRole", "TapFunctionRole"}
    if stack.params.get("EnableProcessor") == "true":
        expected_roles.add("ProcessorFunctionRole")
    assert set(roles) == expected_roles
    for logical, role_name in roles.items():
        assert iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"] == []
        [policy_name] = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
        document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
        if isinstance(document, str):  # moto keeps what CloudFormation gave it: a repr
            document = ast.literal_eval(document)
        # moto leaves an `Fn::If` that chose AWS::NoValue in a list as null.
        for statement in filter(None, document["Statement"]):
            resources = statement["Resource"]
            for arn in [resources] if isinstance(resources, str) else resources:
                if match := log_group.match(arn):
                    assert logical.lower().startswith(match[1]), arn
                    continue
                base = re.sub(r"/(raw|quarantine|aggregates|replays)/\*$|/index/[\w*]+$", "", arn)
                assert base in existing, f"{logical}: {arn} names nothing the stack created"
