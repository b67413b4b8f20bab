"""The SAM template (infra/template.yaml): it lints, it expands, and it deploys what the kit needs.

No AWS call is made: cfn-lint runs through its Python API, and the SAM transform is expanded
locally with aws-sam-translator (its ``transform`` with a managed-policy loader that knows no
policies: the template uses none). Conditions and ``Fn::If`` are then evaluated here for a
parameter set, giving the resources one deployment would really have. The other template tests
(``test_template_*.py``) build on the helpers of this module.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from infra.metrics import NAMESPACE
from infra.resources import (
    DLQ_RETENTION_S,
    REPLAY_MAX_RECEIVES,
    REPLAY_VISIBILITY_TIMEOUT_S,
    ResourceNames,
    table_specs,
)
from pik.cli import deploy as cli_deploy
from pik.settings import Settings

pytest.importorskip("samtranslator", reason="aws-sam-translator is a dev dependency")
pytest.importorskip("cfnlint", reason="cfn-lint is a dev dependency")

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "infra" / "template.yaml"
ACCOUNT = "123456789012"
REGION = "us-east-1"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/orders"
CODE_URI = "s3://pik-artifacts/pik.zip"  # `sam deploy` puts the uploaded package here

DEFAULTS: dict[str, str] = {"StreamArn": STREAM_ARN}
EVERYTHING_ON: dict[str, str] = {
    "StreamArn": STREAM_ARN,
    "StreamKmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/stream-key",
    "UseEnhancedFanOut": "true",
    "UseGlueSchemaRegistry": "true",
    "EnableProcessor": "true",
    "ArchiveKmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/archive-key",
    "ObjectLockMode": "COMPLIANCE",
    "ApiAuth": "TOKEN",
    "ApiToken": "a-token-of-at-least-thirty-two-characters",
    "ConfigFile": "pik.toml",
    "AlarmTopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:pik-alarms",
    "RegistryUser": "registry-api-key",
    "RegistryPassword": "registry-api-secret",
    "RegistryLogicalCluster": "lsrc-12345",
}
CONFIGURATIONS = {"defaults": DEFAULTS, "everything-on": EVERYTHING_ON}

# Resource types that hold data the kit must never lose.
DATA_BEARING = {"AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::SQS::Queue"}
# Handlers whose modules other issues are still writing (the name is the contract).
PENDING_HANDLERS: dict[str, str] = {}
# HTTP routes the template exposes that the app does not serve yet.
PENDING_ROUTES: dict[str, str] = {}
METRICS = (
    "IngestCount",
    "DuplicateCount",
    "RejectedCount",
    "IngestLagMs",
    "ReplayMessageCount",
    "ProcessorErrorCount",
)


# -- loading and expanding ------------------------------------------------------------------------
class NoManagedPolicies:
    """The translator's managed-policy loader, without IAM: the template attaches none."""

    def load(self) -> dict[str, str]:
        return {}


@cache
def _sam_json() -> str:
    from samtranslator.yaml_helper import yaml_parse

    return json.dumps(yaml_parse(TEMPLATE_PATH.read_text("utf-8")))


def sam_template() -> dict[str, Any]:
    """The template as written (short-form tags turned into ``Fn::`` / ``Ref`` maps)."""
    doc: dict[str, Any] = json.loads(_sam_json())
    return doc


@cache
def _expanded_json(params: tuple[tuple[str, str], ...]) -> str:
    from samtranslator.translator.transform import transform

    doc = sam_template()
    doc["Globals"]["Function"]["CodeUri"] = CODE_URI
    before = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = REGION  # the translator names ARNs' partition by region
    try:
        return json.dumps(transform(doc, dict(params), NoManagedPolicies()))
    finally:
        if before is None:
            del os.environ["AWS_DEFAULT_REGION"]
        else:
            os.environ["AWS_DEFAULT_REGION"] = before


def expanded(params: dict[str, str]) -> dict[str, Any]:
    """The template after the SAM transform: plain CloudFormation, conditions unresolved."""
    doc: dict[str, Any] = json.loads(_expanded_json(tuple(sorted(params.items()))))
    return doc


def parameter_values(template: dict[str, Any], params: dict[str, str]) -> dict[str, str]:
    defaults = {k: str(v["Default"]) for k, v in template["Parameters"].items() if "Default" in v}
    return {**defaults, **params}


def conditions(template: dict[str, Any], params: dict[str, str]) -> dict[str, bool]:
    values = parameter_values(template, params)
    raw = template.get("Conditions", {})
    done: dict[str, bool] = {}

    def value(node: Any) -> Any:
        if isinstance(node, dict) and set(node) == {"Ref"}:
            return values[node["Ref"]]
        return node

    def truth(node: Any) -> bool:
        (fn, args), *_ = node.items()
        if fn == "Fn::Equals":
            return str(value(args[0])) == str(value(args[1]))
        if fn == "Fn::Not":
            return not truth(args[0])
        if fn == "Fn::And":
            return all(truth(a) for a in args)
        if fn == "Fn::Or":
            return any(truth(a) for a in args)
        if fn == "Condition":
            return named(args)
        raise AssertionError(f"condition function {fn} not handled here")

    def named(name: str) -> bool:
        if name not in done:
            done[name] = truth(raw[name])
        return done[name]

    return {name: named(name) for name in raw}


_NO_VALUE = object()


def resolve_ifs(node: Any, truth: dict[str, bool]) -> Any:
    """``Fn::If`` chosen and ``AWS::NoValue`` removed; every other intrinsic kept as it is."""
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            name, yes, no = node["Fn::If"]
            return resolve_ifs(yes if truth[name] else no, truth)
        if node == {"Ref": "AWS::NoValue"}:
            return _NO_VALUE
        out = {k: resolve_ifs(v, truth) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not _NO_VALUE}
    if isinstance(node, list):
        items = [resolve_ifs(v, truth) for v in node]
        return [v for v in items if v is not _NO_VALUE]
    return node


def deployed(params: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The resources one deployment with ``params`` creates, ``Fn::If`` resolved."""
    template = expanded(params)
    truth = conditions(template, params)
    return {
        name: resolve_ifs(resource, truth)
        for name, resource in template["Resources"].items()
        if truth.get(resource.get("Condition", ""), True)
    }


def of_type(resources: dict[str, dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in resources.items() if v["Type"] == kind}


def ref_name(node: Any) -> str | None:
    """The logical id or parameter a ``Ref`` / ``Fn::GetAtt`` points at."""
    if isinstance(node, dict) and set(node) == {"Ref"}:
        return str(node["Ref"])
    if isinstance(node, dict) and set(node) == {"Fn::GetAtt"}:
        target = node["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else target.split(".")[0])
    return None


# -- lint -----------------------------------------------------------------------------------------
def test_template_passes_cfn_lint() -> None:
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(TEMPLATE_PATH, ManualArgs(include_checks=["I"], regions=[REGION]))
    assert [str(m) for m in matches] == []


# -- what gets deployed ---------------------------------------------------------------------------
def test_the_transform_expands_to_functions_with_event_source_mappings() -> None:
    base = deployed(DEFAULTS)
    assert set(of_type(base, "AWS::Lambda::Function")) == {"ApiFunction", "TapFunction"}
    assert set(of_type(base, "AWS::Lambda::EventSourceMapping")) == {"TapFunctionStream"}
    assert not of_type(base, "AWS::Kinesis::StreamConsumer")
    assert not of_type(base, "AWS::Serverless::Function")

    full = deployed(EVERYTHING_ON)
    assert set(of_type(full, "AWS::Lambda::Function")) == {
        "ApiFunction",
        "TapFunction",
        "ProcessorFunction",
    }
    assert set(of_type(full, "AWS::Lambda::EventSourceMapping")) == {
        "TapFunctionStream",
        "ProcessorFunctionReplayQueue",
    }
    assert set(of_type(full, "AWS::Kinesis::StreamConsumer")) == {"TapStreamConsumer"}
    # The processor's switch removes compute only, never a place where data lives.
    data = {k for k, v in full.items() if v["Type"] in DATA_BEARING}
    assert data == {k for k, v in base.items() if v["Type"] in DATA_BEARING}


@pytest.mark.parametrize("config", CONFIGURATIONS)
def test_every_data_bearing_resource_is_retained(config: str) -> None:
    resources = deployed(CONFIGURATIONS[config])
    data = {k: v for k, v in resources.items() if v["Type"] in DATA_BEARING}
    assert {v["Type"] for v in data.values()} == DATA_BEARING
    for name, resource in data.items():
        assert resource.get("DeletionPolicy") == "Retain", name
        assert resource.get("UpdateReplacePolicy") == "Retain", name
        assert "Condition" not in resource, f"{name} must not depend on a switch"
    for name, table in of_type(resources, "AWS::DynamoDB::Table").items():
        props = table["Properties"]
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["DeletionProtectionEnabled"] is True, name


def test_tables_have_the_shapes_bootstrap_creates() -> None:
    """Same keys, attributes and indexes as infra/resources.py creates on the embedded AWS."""
    names = ResourceNames()
    logical = {
        names.events_table: "EventsTable",
        names.leases_table: "LeasesTable",
        names.replay_jobs_table: "ReplayJobsTable",
        names.aggregates_table: "AggregatesTable",
    }
    tables = of_type(deployed(DEFAULTS), "AWS::DynamoDB::Table")
    assert set(tables) == set(logical.values())

    def norm(spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "KeySchema": spec["KeySchema"],
            "AttributeDefinitions": sorted(
                spec["AttributeDefinitions"], key=lambda a: a["AttributeName"]
            ),
            "GlobalSecondaryIndexes": sorted(
                spec.get("GlobalSecondaryIndexes", []), key=lambda i: i["IndexName"]
            ),
        }

    for spec in table_specs(names):
        props = tables[logical[spec["TableName"]]]["Properties"]
        assert norm(props) == norm(spec), spec["TableName"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        suffix = spec["TableName"].removeprefix("pik")
        assert props["TableName"] == {"Fn::Sub": "${AWS::StackName}" + suffix}


def test_the_raw_bucket_is_private_encrypted_versioned_and_never_expires() -> None:
    bucket = deployed(DEFAULTS)["RawBucket"]["Properties"]
    [rule] = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert "LifecycleConfiguration" not in bucket
    assert "ObjectLockEnabled" not in bucket and "ObjectLockConfiguration" not in bucket

    locked = deployed(EVERYTHING_ON)["RawBucket"]["Properties"]
    [rule] = locked["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Ref": "ArchiveKmsKeyArn"},
    }
    assert locked["ObjectLockEnabled"] is True
    assert locked["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled",
        "Rule": {
            "DefaultRetention": {"Mode": "COMPLIANCE", "Days": {"Ref": "ObjectLockRetentionDays"}}
        },
    }
    assert "LifecycleConfiguration" not in locked


def test_the_replay_queue_redrives_like_bootstrap_and_outlasts_the_processor() -> None:
    resources = deployed(EVERYTHING_ON)
    queue = resources["ReplayQueue"]["Properties"]
    dlq = resources["ReplayDeadLetterQueue"]["Properties"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["ReplayDeadLetterQueue", "Arn"]},
        "maxReceiveCount": REPLAY_MAX_RECEIVES,
    }
    assert dlq["MessageRetentionPeriod"] == DLQ_RETENTION_S
    assert queue["VisibilityTimeout"] == REPLAY_VISIBILITY_TIMEOUT_S
    # Lambda refuses an SQS source whose visibility timeout is shorter than the function's.
    timeout = resources["ProcessorFunction"]["Properties"]["Timeout"]
    assert queue["VisibilityTimeout"] >= timeout


@pytest.mark.parametrize("config", CONFIGURATIONS)
def test_the_tap_reads_the_existing_stream_with_partial_batch_responses(config: str) -> None:
    params = CONFIGURATIONS[config]
    resources = deployed(params)
    mapping = resources["TapFunctionStream"]["Properties"]
    if params.get("UseEnhancedFanOut") == "true":
        assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["TapStreamConsumer", "ConsumerARN"]}
        consumer = resources["TapStreamConsumer"]["Properties"]
        assert consumer["StreamARN"] == {"Ref": "StreamArn"}
    else:
        assert mapping["EventSourceArn"] == {"Ref": "StreamArn"}
    assert mapping["FunctionName"] == {"Ref": "TapFunction"}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": ["TapFailureQueue", "Arn"]}}
    }
    assert mapping["BatchSize"] == {"Ref": "TapBatchSize"}
    assert mapping["ParallelizationFactor"] == {"Ref": "TapParallelizationFactor"}
    assert mapping["StartingPosition"] == {"Ref": "StartingPosition"}
    assert mapping["MaximumRetryAttempts"] == {"Ref": "TapMaximumRetryAttempts"}
    # The stream is only read: the template creates no stream and changes none.
    assert not of_type(resources, "AWS::Kinesis::Stream")
    assert sam_template()["Parameters"]["StreamArn"].get("Default") is None


def test_the_processor_is_off_by_default_and_consumes_the_replay_queue_when_on() -> None:
    assert sam_template()["Parameters"]["EnableProcessor"]["Default"] == "false"
    off = deployed(DEFAULTS)
    assert not [k for k in off if k.startswith("Processor")]
    on = deployed({**DEFAULTS, "EnableProcessor": "true"})
    mapping = on["ProcessorFunctionReplayQueue"]["Properties"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["ReplayQueue", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == 10
    assert on["ProcessorFunction"]["Properties"]["Handler"] == "pik.lambdas.processor.handler"


def _app_routes() -> set[str]:
    """Every operation the kit's HTTP app documents, as "METHOD /path" (parameters as {})."""
    from pik.http import create_app
    from pik.kit import build_kit

    kit = build_kit(Settings(endpoint_url="http://127.0.0.1:9", region=REGION))
    paths = create_app(kit).openapi()["paths"]
    return {
        f"{method.upper()} {re.sub(r'{[^}]+}', '{}', path)}"
        for path, operations in paths.items()
        for method in operations
    }


@pytest.mark.parametrize("config", CONFIGURATIONS)
def test_the_http_api_serves_ingest_replay_and_events_with_auth_and_throttling(
    config: str,
) -> None:
    params = CONFIGURATIONS[config]
    resources = deployed(params)
    routes = of_type(resources, "AWS::ApiGatewayV2::Route")
    keys = {re.sub(r"{[^}]+}", "{}", r["Properties"]["RouteKey"]) for r in routes.values()}
    assert keys == {
        "POST /ingest",
        "POST /ingest/batch",
        "POST /replay",
        "GET /replays",
        "GET /replays/{}",
        "POST /replays/{}/cancel",
        "GET /events/{}",
        "GET /healthz",
    }
    served = _app_routes()
    assert {k for k in keys if k not in served} <= set(PENDING_ROUTES)
    token = params.get("ApiAuth") == "TOKEN"
    for route in routes.values():
        assert route["Properties"]["AuthorizationType"] == ("NONE" if token else "AWS_IAM")
        assert route["Properties"]["Target"] == {"Fn::Sub": "integrations/${HttpApiIntegration}"}
    env = resources["ApiFunction"]["Properties"]["Environment"]["Variables"]
    if token:  # the kit itself checks `Authorization: Bearer <token>`
        assert env["PIK_API_TOKEN"] == {"Ref": "ApiToken"}
    else:
        assert "PIK_API_TOKEN" not in env
    [stage] = of_type(resources, "AWS::ApiGatewayV2::Stage").values()
    assert stage["Properties"]["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "ApiThrottleRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ApiThrottleBurstLimit"},
    }
    [integration] = of_type(resources, "AWS::ApiGatewayV2::Integration").values()
    assert integration["Properties"]["IntegrationUri"] == {"Fn::GetAtt": ["ApiFunction", "Arn"]}
    [permission] = of_type(resources, "AWS::Lambda::Permission").values()
    assert permission["Properties"]["Principal"] == "apigateway.amazonaws.com"


def test_token_auth_without_a_token_is_refused_by_a_rule() -> None:
    rule = sam_template()["Rules"]["TokenAuthNeedsAToken"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "ApiAuth"}, "TOKEN"]}
    assert rule["Assertions"][0]["Assert"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ApiToken"}, ""]}]
    }
    assert sam_template()["Parameters"]["ApiToken"]["NoEcho"] is True


def _holds(node: Any, params: dict[str, str]) -> Any:
    """A rule assertion's value for ``params`` (the functions the template's rules use)."""
    if isinstance(node, dict) and len(node) == 1:
        ((fn, args),) = node.items()
        if fn == "Ref":
            return params.get(args, "")
        values = [_holds(a, params) for a in args]
        ops = {
            "Fn::Equals": lambda v: v[0] == v[1],
            "Fn::Not": lambda v: not v[0],
            "Fn::And": all,
            "Fn::Or": any,
        }
        return ops[fn](values)
    return node


@pytest.mark.parametrize(
    ("given", "accepted"),
    [
        ({}, True),
        ({"RegistryUser": "key", "RegistryPassword": "secret"}, True),
        ({"RegistryToken": "token"}, True),
        ({"RegistryUser": "key"}, False),
        ({"RegistryPassword": "secret"}, False),
        ({"RegistryToken": "token", "RegistryUser": "key", "RegistryPassword": "secret"}, False),
    ],
)
def test_registry_credentials_are_refused_by_a_rule_when_incomplete(
    given: dict[str, str], accepted: bool
) -> None:
    rule = sam_template()["Rules"]["RegistryUserNeedsAPassword"]
    assert all(_holds(a["Assert"], given) for a in rule["Assertions"]) is accepted
    for name in ("RegistryPassword", "RegistryToken"):
        assert sam_template()["Parameters"][name]["NoEcho"] is True


def test_the_tap_gets_the_registry_credentials_it_is_given() -> None:
    def tap_env(params: dict[str, str]) -> dict[str, Any]:
        functions = of_type(deployed({**DEFAULTS, **params}), "AWS::Lambda::Function")
        [tap] = [
            f for f in functions.values() if f["Properties"]["Handler"].endswith("tap.handler")
        ]
        return {
            k: v
            for k, v in tap["Properties"]["Environment"]["Variables"].items()
            if "REGISTRY" in k
        }

    assert tap_env({}) == {}
    assert tap_env({"RegistryToken": "t"}) == {"PIK_REGISTRY_TOKEN": {"Ref": "RegistryToken"}}
    assert tap_env({"RegistryUser": "u", "RegistryPassword": "p"}) == {
        "PIK_REGISTRY_USER": {"Ref": "RegistryUser"},
        "PIK_REGISTRY_PASSWORD": {"Ref": "RegistryPassword"},
    }


def _handler_defined(handler: str) -> bool | None:
    """True/False: the module defines the function or not; None: no such module yet."""
    module, _, function = handler.rpartition(".")
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.is_file():
        return None
    tree = ast.parse(path.read_text("utf-8"))
    return any(isinstance(n, ast.FunctionDef) and n.name == function for n in tree.body)


def test_every_function_handler_is_defined() -> None:
    functions = of_type(deployed(EVERYTHING_ON), "AWS::Lambda::Function")
    handlers = {f["Properties"]["Handler"] for f in functions.values()}
    assert handlers == {
        "pik.lambdas.api.handler",
        "pik.lambdas.tap.handler",
        "pik.lambdas.processor.handler",
    }
    for handler in sorted(handlers):
        defined = _handler_defined(handler)
        if defined is None:
            assert handler in PENDING_HANDLERS, f"{handler}: module missing"
        else:
            assert defined, f"{handler}: no such function"


def test_function_environment_is_read_by_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every variable the template sets lands in a settings field (no typo goes unnoticed)."""
    functions = of_type(deployed(EVERYTHING_ON), "AWS::Lambda::Function")
    variables: set[str] = set()
    for function in functions.values():
        variables |= set(function["Properties"]["Environment"]["Variables"])
    for name in list(os.environ):
        if name.startswith("PIK_") or name in ("DRY_RUN", "AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name)
    for name in variables:
        monkeypatch.setenv(name, "/var/task/pik.toml" if name == "PIK_CONFIG" else "INFO")
    plain = Settings().model_dump()
    for name in variables:
        assert name.startswith("PIK_"), name
        field = name.removeprefix("PIK_").lower()
        assert field in plain, f"{name} is read by no settings field"
    settings = Settings()
    assert settings.config == Path("/var/task/pik.toml")
    assert settings.names() == ResourceNames(
        **{f: "INFO" for f in ResourceNames.__dataclass_fields__ if f != "demo_stream"}
    )


def _dashboard(params: dict[str, str]) -> dict[str, Any]:
    body = deployed(params)["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    text = re.sub(r"\$\{[^}]+\}", "X", body)
    doc: dict[str, Any] = json.loads(text)
    return doc


def test_the_dashboard_shows_every_kit_metric() -> None:
    widgets = _dashboard(DEFAULTS)["widgets"]
    text = json.dumps(widgets)
    for metric in METRICS:
        assert f'MetricName=\\"{metric}\\"' in text, metric
    assert text.count("{" + NAMESPACE) == len(METRICS) + 2  # lag: three percentiles
    for stat in ("p50", "p90", "p99"):
        assert f"'{stat}'" in text
    assert "IteratorAge" in text  # how far the tap is behind the stream


def test_metric_names_are_the_ones_the_code_emits() -> None:
    sources = "".join(
        p.read_text("utf-8")
        for folder in ("consumers", "producers", "infra", "pik")
        for p in (ROOT / folder).rglob("*.py")
    )
    missing = [m for m in METRICS if f'"{m}"' not in sources]
    assert missing == []


@pytest.mark.parametrize("config", CONFIGURATIONS)
def test_alarms_watch_rejections_lag_and_processor_errors(config: str) -> None:
    params = CONFIGURATIONS[config]
    alarms = of_type(deployed(params), "AWS::CloudWatch::Alarm")
    watched = {}
    for name, alarm in alarms.items():
        props = alarm["Properties"]
        metric = props.get("MetricName") or " ".join(m["Expression"] for m in props["Metrics"])
        watched[name] = metric
        if params.get("AlarmTopicArn"):
            assert props["AlarmActions"] == [{"Ref": "AlarmTopicArn"}]
        else:
            assert "AlarmActions" not in props
    assert f"SELECT SUM(RejectedCount) FROM {NAMESPACE}" in watched.values()
    assert f"SELECT MAX(IngestLagMs) FROM {NAMESPACE}" in watched.values()
    assert "IteratorAge" in watched.values()
    processor = f"SELECT SUM(ProcessorErrorCount) FROM {NAMESPACE}" in watched.values()
    assert processor == (params.get("EnableProcessor") == "true")


# -- `pik deploy` ---------------------------------------------------------------------------------
def test_the_deploy_command_builds_for_the_runtime_the_template_names() -> None:
    function = sam_template()["Globals"]["Function"]
    assert function["Runtime"] == f"python{cli_deploy.LAMBDA_PYTHON}"
    assert function["Architectures"] == [cli_deploy.LAMBDA_ARCHITECTURE]
    assert cli_deploy.LAMBDA_PLATFORM.endswith(cli_deploy.LAMBDA_ARCHITECTURE)
    code_uri = (TEMPLATE_PATH.parent / function["CodeUri"]).resolve()
    assert code_uri == (ROOT / cli_deploy.BUILD_DIR).resolve()
    assert TEMPLATE_PATH.relative_to(ROOT) == cli_deploy.TEMPLATE
    assert cli_deploy.template_parameters(TEMPLATE_PATH) == tuple(sam_template()["Parameters"])


def test_pik_deploy_prints_the_build_and_deploy_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    from pik.cli import app

    monkeypatch.setenv("PIK_API_TOKEN", "s3cret-token-never-printed")
    arn = "arn:aws:kinesis:eu-west-1:123456789012:stream/orders"
    result = CliRunner().invoke(
        app,
        ["deploy", "--stream-arn", arn, "--api-auth", "TOKEN", "--enable-processor",
         "--parameter", "TapBatchSize=100"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"cd {ROOT}"
    assert any(
        "pip install" in line and "--platform manylinux2014_x86_64" in line for line in lines
    )
    [deploy] = [line for line in lines if line.startswith("sam deploy")]
    assert "--region eu-west-1" in deploy  # an event source mapping reads its own region
    for part in (f"StreamArn={arn}", "ApiAuth=TOKEN", "EnableProcessor=true", "TapBatchSize=100"):
        assert part in deploy
    assert 'ApiToken="$PIK_API_TOKEN"' in deploy
    assert "s3cret" not in result.output


def test_pik_deploy_passes_the_registry_credentials_without_printing_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pik.cli import app

    arn = "arn:aws:kinesis:eu-west-1:123456789012:stream/orders"
    monkeypatch.setenv("PIK_REGISTRY_USER", "sr-key")
    monkeypatch.setenv("PIK_REGISTRY_PASSWORD", "sr-secret-never-printed")
    result = CliRunner().invoke(app, ["deploy", "--stream-arn", arn])
    assert result.exit_code == 0, result.output
    [deploy] = [line for line in result.output.splitlines() if line.startswith("sam deploy")]
    assert "RegistryUser=sr-key" in deploy
    assert 'RegistryPassword="$PIK_REGISTRY_PASSWORD"' in deploy
    assert "sr-secret" not in result.output
    monkeypatch.setenv("PIK_REGISTRY_TOKEN", "sr-token")
    refused = CliRunner().invoke(app, ["deploy", "--stream-arn", arn])
    assert refused.exit_code == 2 and "not both" in refused.output


def test_pik_deploy_json_and_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    from pik.cli import app

    monkeypatch.delenv("PIK_API_TOKEN", raising=False)
    runner = CliRunner()
    done = runner.invoke(app, ["deploy", "--stream-arn", STREAM_ARN, "--json"])
    assert done.exit_code == 0, done.output
    doc = json.loads(done.output)
    assert doc["ran"] is False and doc["parameters"]["EnableProcessor"] == "false"
    assert doc["commands"][-1][:2] == ["sam", "deploy"]

    unknown = runner.invoke(app, ["deploy", "--stream-arn", STREAM_ARN, "--parameter", "Nope=1"])
    assert unknown.exit_code == 2 and "Nope" in unknown.output
    bad_arn = runner.invoke(app, ["deploy", "--stream-arn", "orders"])
    assert bad_arn.exit_code == 2
    no_token = runner.invoke(app, ["deploy", "--stream-arn", STREAM_ARN, "--api-auth", "TOKEN"])
    assert no_token.exit_code == 2 and "PIK_API_TOKEN" in no_token.output
    monkeypatch.setenv("PATH", "/nonexistent")
    no_sam = runner.invoke(app, ["deploy", "--stream-arn", STREAM_ARN, "--run"])
    assert no_sam.exit_code == 2 and "sam" in no_sam.output


def test_pik_deploy_grants_glue_only_for_a_config_with_an_avro_glue_binding(
    tmp_path: Path,
) -> None:
    from pik.cli import app

    runner = CliRunner()
    glue, plain = tmp_path / "glue.toml", tmp_path / "plain.toml"
    glue.write_text('[[tap]]\nstream = "orders"\nformat = "avro-glue"\nsource = "shop"\n')
    plain.write_text('[[tap]]\nstream = "orders"\nformat = "json"\n')
    docs = {}
    for path in (glue, plain):
        done = runner.invoke(
            app, ["deploy", "--stream-arn", STREAM_ARN, "--config", str(path), "--json"]
        )
        assert done.exit_code == 0, done.output
        docs[path.name] = json.loads(done.output)["parameters"]
    assert docs["glue.toml"]["UseGlueSchemaRegistry"] == "true"
    assert "UseGlueSchemaRegistry" not in docs["plain.toml"]
    statements = [
        s
        for s in deployed({**DEFAULTS, "UseGlueSchemaRegistry": "true"})["TapFunctionRole"][
            "Properties"
        ]["Policies"][0]["PolicyDocument"]["Statement"]
        if "glue" in str(s["Action"])
    ]
    assert [s["Action"] for s in statements] == ["glue:GetSchemaVersion"]
    without = deployed(DEFAULTS)["TapFunctionRole"]["Properties"]["Policies"][0]
    assert "glue" not in json.dumps(without)


def test_expansion_is_deterministic() -> None:
    assert expanded(DEFAULTS) == expanded(copy.deepcopy(DEFAULTS))
