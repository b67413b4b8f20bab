"""Least privilege: each function's role grants exactly the calls that function's code makes.

Two sides are compared for every function and for both parameter sets of ``test_template``:

* **What the code calls.** ``HANDLER_CALLS`` is the reviewed table: per handler module, the
  boto3 operations it makes and on which resources. It is cross-checked against the code: the
  handler's import closure (our packages only) is parsed, and every call of a boto3 client
  method in it (``self._ddb.transact_write_items(``, ``s3.put_object(``,
  ``get_paginator("list_shards")``, ...) is found; each must be in the table, or be listed in
  ``NOT_CALLED`` with the reason that handler never reaches it. An operation of the table that
  the code no longer makes fails too, unless it is ``PENDING`` (code another issue is writing).
* **What the role grants.** The role's statements, with ``Fn::If`` resolved, as (IAM action,
  resource) pairs, where a resource is named by its logical id (``EventsTable``,
  ``EventsTable/index/*``, ``RawBucket/raw/*``, ``StreamArn``). They must equal the table's
  operations turned into IAM actions (``IAM_ACTIONS``: a TransactWriteItems of Put and Update
  items needs ``dynamodb:PutItem`` and ``dynamodb:UpdateItem``), plus what the Lambda runtime
  itself does with the role (``RUNTIME_GRANTS``: logs, the event source mapping's polling, the
  on-failure destination) and the KMS calls S3 makes for SSE-KMS.

No wildcard action and no ``Resource: "*"`` anywhere.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from botocore import xform_name
from botocore.session import get_session

from tests.integration.test_template import (
    CONFIGURATIONS,
    ROOT,
    conditions,
    deployed,
    expanded,
    of_type,
    parameter_values,
    ref_name,
)

PACKAGES = ("schemas", "consumers", "producers", "infra", "pik")
SERVICES = ("s3", "dynamodb", "sqs", "kinesis", "glue")
# Which client a receiver is, by its name (``self._ddb``, ``s3``, ``kinesis_client``, ...).
RECEIVERS = {
    "dynamodb": re.compile(r"ddb|dynamo", re.I),
    "s3": re.compile(r"(^|_)s3$", re.I),
    "sqs": re.compile(r"sqs", re.I),
    "kinesis": re.compile(r"kinesis", re.I),
    "glue": re.compile(r"glue", re.I),
}
WAITERS = {
    ("dynamodb", "table_exists"): "DescribeTable",
    ("kinesis", "stream_exists"): "DescribeStream",
}
# ``infra.dynamo``'s helpers make the call for their caller (their own client is ``client``, which
# no receiver pattern matches): ``paginate(self._ddb, "Query", ...)`` is a Query where it is called.
HELPERS = {"batch_get": "dynamodb:BatchGetItem", "batch_write": "dynamodb:BatchWriteItem"}

# IAM actions one boto3 operation needs (AWS Service Authorization Reference).
IAM_ACTIONS: dict[str, tuple[str, ...]] = {
    "s3:PutObject": ("s3:PutObject",),
    "s3:GetObject": ("s3:GetObject",),
    "s3:ListObjectsV2": ("s3:ListBucket",),
    # Each item of a transaction is authorised as its own operation. The index writes Put items
    # (occurrences, counted marks, time bundles) and Update items (rollups, duplicates), never
    # Delete or ConditionCheck items.
    "dynamodb:TransactWriteItems": ("dynamodb:PutItem", "dynamodb:UpdateItem"),
    # Each statement of a batch is authorised by its kind: the index only INSERTs (claims).
    "dynamodb:BatchExecuteStatement": ("dynamodb:PartiQLInsert", "dynamodb:PartiQLUpdate"),
    "dynamodb:BatchWriteItem": ("dynamodb:BatchWriteItem",),
    "dynamodb:BatchGetItem": ("dynamodb:BatchGetItem",),
    "dynamodb:GetItem": ("dynamodb:GetItem",),
    "dynamodb:PutItem": ("dynamodb:PutItem",),
    "dynamodb:UpdateItem": ("dynamodb:UpdateItem",),
    "dynamodb:Query": ("dynamodb:Query",),
    "sqs:SendMessageBatch": ("sqs:SendMessage",),
    "sqs:GetQueueUrl": ("sqs:GetQueueUrl",),
    "sqs:GetQueueAttributes": ("sqs:GetQueueAttributes",),
    "glue:GetSchemaVersion": ("glue:GetSchemaVersion",),
}
# Operations granted only when a template condition holds (the code can make them, but only a
# binding that needs them does): operation -> condition.
CONDITIONAL_CALLS = {"glue:GetSchemaVersion": "UseGlue"}
ARCHIVE = ("RawBucket/raw/*", "RawBucket/quarantine/*")

# The reviewed table: per handler module, operation -> the resources it is made on.
HANDLER_CALLS: dict[str, dict[str, tuple[str, ...]]] = {
    "pik.lambdas.api": {
        # ingest: archive files (S3RawArchive.put_file); replay: sent logs (S3ReplayLog)
        "s3:PutObject": (*ARCHIVE, "RawBucket/replays/*"),
        # GET /events/{id} (records, sent logs, aggregate input lists), replay payloads
        "s3:GetObject": (*ARCHIVE, "RawBucket/replays/*", "RawBucket/aggregates/*"),
        "s3:ListObjectsV2": ("RawBucket",),  # explain: a replay's sent log blocks
        "dynamodb:BatchWriteItem": ("EventsTable",),  # occurrences, catalog, wide marks
        "dynamodb:BatchGetItem": ("EventsTable",),  # lookups, wide marks, occurrences
        "dynamodb:GetItem": ("EventsTable", "ReplayJobsTable"),  # explain; a job
        "dynamodb:Query": (
            "EventsTable",  # an event's occurrences
            "EventsTable/index/*",  # replay selection, investigations
            "ReplayJobsTable/index/by_created",  # recent jobs
            "AggregatesTable",  # explain: an entity's aggregate versions
        ),
        "dynamodb:TransactWriteItems": ("EventsTable",),  # rollups, guarded by counted marks
        # claims and occurrences (PartiQL INSERT), duplicates' ids (UPDATE ... set_add)
        "dynamodb:BatchExecuteStatement": ("EventsTable",),
        "dynamodb:PutItem": ("ReplayJobsTable",),  # a new job
        # replay progress; a duplicate's id should set_add be refused (ClaimLog.add_to_sets)
        "dynamodb:UpdateItem": ("ReplayJobsTable", "EventsTable"),
        "sqs:SendMessageBatch": ("ReplayQueue",),  # replay messages
        "sqs:GetQueueUrl": ("ReplayQueue",),  # the target by name
        "sqs:GetQueueAttributes": ("ReplayQueue",),  # the target exists
    },
    "pik.lambdas.tap": {
        "s3:PutObject": ARCHIVE,
        # a re-run batch's archive file; the files of pending claims a writer finishes
        "s3:GetObject": ARCHIVE,
        "dynamodb:TransactWriteItems": ("EventsTable",),  # rollups, guarded by counted marks
        # claims and occurrences (PartiQL INSERT), duplicates' ids (UPDATE ... set_add)
        "dynamodb:BatchExecuteStatement": ("EventsTable",),
        "dynamodb:UpdateItem": ("EventsTable",),  # should set_add be refused (add_to_sets)
        "dynamodb:BatchWriteItem": ("EventsTable",),
        "dynamodb:BatchGetItem": ("EventsTable",),
        # a day's latest arrivals, once per key; pending claims, once a minute
        "dynamodb:Query": ("EventsTable",),
        # avro-glue bindings: writer schemas by version UUID, in any registry of the account
        "glue:GetSchemaVersion": ("registry/*", "schema/*"),
    },
    "pik.lambdas.processor": {
        # The replayed record (any prefix a replay may point at) and the window's events;
        # version input lists over the inline limit are written under aggregates/.
        "s3:GetObject": (*ARCHIVE, "RawBucket/aggregates/*"),
        "s3:PutObject": ("RawBucket/aggregates/*",),
        "dynamodb:Query": ("EventsTable/index/by_entity", "AggregatesTable"),
        "dynamodb:BatchGetItem": ("EventsTable",),  # the wide mark of the window's entity
        "dynamodb:PutItem": ("AggregatesTable",),  # a new version, conditionally
    },
}
# Operations of the table that the handler's code does not reach yet, with the issue adding it.
PENDING: dict[str, dict[str, str]] = {}
# Call sites in a handler's import closure that the handler never reaches (or that its role
# deliberately does not allow), with the reason. Keys: "module:Qualified.name" (a class covers
# its methods).
_READS = "explain / replay reads (the kit built by build_kit has them), not ingest"
_INGEST = "the ingest sink (built by build_kit), which the processor never feeds"
_REINDEX = "`pik reindex` lists the archive; no deployed function rebuilds the index"
_GLUE = "only the tap decodes stream records (avro-glue bindings)"
_BOOTSTRAP = "resource bootstrap (`pik bootstrap`, `pik up`): the stack creates the resources"
# The kit (pik.kit, the composition root) imports every use case's adapters; a handler only asks
# it for some. What each Kit method builds, for the handlers that never call it:
_TAP_WORKER = (
    "the polling/EFO tap and its leases (Kit.tap_worker): on Lambda the event source mapping reads"
)
_PRODUCE = "PutRecords of `pik produce` (Kit.kinesis) and of Kinesis replay targets"
_REPLAY = "the replay service (Kit.replay_service): only the API function replays"
_QUERIES = "investigations (Kit.investigator): only the API function serves them"
_LINEAGE = "explain's lineage and the processor (Kit.lineage, Kit.aggregates): not the tap's"
_QUEUE = "the replay queue by name (Kit.replay_queue): `pik process` only"
_KIT_TAP = {
    "infra.kinesis_boto:BotoKinesis": _TAP_WORKER,
    "infra.kinesis_boto:put_entries": _PRODUCE,
    "infra.leases_dynamo:DynamoLeaseStore": _TAP_WORKER,
}
_KIT_REPLAY = {
    "infra.replay_jobs:DynamoReplayJobs": _REPLAY,
    "infra.replay_log:S3ReplayLog": _REPLAY,
    "infra.replay_queries:DynamoReplayQueries": _REPLAY,
    "infra.targets:KinesisTarget": _REPLAY,
    "infra.targets:SqsTarget": _REPLAY,
    "infra.targets:_check_queue": _REPLAY,
    "infra.targets:_check_stream": _REPLAY,
    "infra.targets:_queue_url": _REPLAY,
}
NOT_CALLED: dict[str, dict[str, str]] = {
    "pik.lambdas.api": {
        **_KIT_TAP,
        "infra.resources:Bootstrap": _BOOTSTRAP,
        "infra.schema_registry:GlueSchemaSource": _GLUE,
        "infra.targets:KinesisTarget": "replay to a Kinesis stream is not granted to the "
        "deployed API (docs/deploy.md: add the stream to ApiFunctionRole to allow it)",
        "infra.targets:_check_stream": "as KinesisTarget",
    },
    "pik.lambdas.tap": {
        **_KIT_TAP,
        **_KIT_REPLAY,
        "infra.aggregates:DynamoAggregates": _LINEAGE,
        "infra.index_queries:DynamoIndexQueries": _QUERIES,
        "infra.queue:queue_url": _QUEUE,
        "infra.resources:Bootstrap": _BOOTSTRAP,
        "infra.schema_registry:GlueSchemaSource.schema_names": "pik schemas check only",
        "infra.schema_registry:GlueSchemaSource.compatibility": "pik schemas check only",
        "infra.archive:S3RawArchive.keys": _REINDEX,
        "infra.index:DynamoEventIndex.get": _READS,
        "infra.index:DynamoEventIndex._pages": _READS,
    },
    "pik.lambdas.processor": {
        **_KIT_TAP,
        **_KIT_REPLAY,
        "infra.resources:Bootstrap": _BOOTSTRAP,
        "infra.schema_registry:GlueSchemaSource": _GLUE,
        "infra.archive:S3RawArchive.keys": _REINDEX,
        "infra.claims:ClaimLog": _INGEST,
        "infra.index:DynamoEventIndex._write_late": _INGEST,
        "infra.index:DynamoEventIndex._claim": _INGEST,
        "infra.index:DynamoEventIndex._count": _INGEST,
        "infra.index:DynamoEventIndex.record_catalog": _INGEST,
        "infra.index:DynamoEventIndex.get": _READS,
        "infra.queue:queue_url": "only `pik process` (Kit.replay_queue) looks the "
        "queue up by name; on Lambda the event source mapping receives and deletes "
        "(RUNTIME_GRANTS)",
    },
}


def _log_group(suffix: str) -> str:
    return f"log-group:/aws/lambda/${{AWS::StackName}}-{suffix}:*"


def runtime_grants(function: str, truth: dict[str, bool]) -> set[tuple[str, str]]:
    """What Lambda itself does with a function's role: logs, polling, failure destinations."""
    suffix = {"ApiFunction": "api", "TapFunction": "tap", "ProcessorFunction": "processor"}
    grants = {
        (a, _log_group(suffix[function])) for a in ("logs:CreateLogStream", "logs:PutLogEvents")
    }
    if function == "TapFunction":
        for action in (
            "DescribeStream",
            "DescribeStreamSummary",
            "GetRecords",
            "GetShardIterator",
            "ListShards",
        ):
            grants.add((f"kinesis:{action}", "StreamArn"))
        if truth["UseEfo"]:
            grants |= {
                ("kinesis:SubscribeToShard", "TapStreamConsumer"),
                ("kinesis:DescribeStreamConsumer", "TapStreamConsumer"),
            }
        if truth["StreamEncrypted"]:
            grants.add(("kms:Decrypt", "StreamKmsKeyArn"))
        grants.add(("sqs:SendMessage", "TapFailureQueue"))
    if function == "ProcessorFunction":
        for action in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes"):
            grants.add((f"sqs:{action}", "ReplayQueue"))
    return grants  # fmt: skip


def expected_grants(module: str, function: str, truth: dict[str, bool]) -> set[tuple[str, str]]:
    calls = HANDLER_CALLS[module]
    grants = runtime_grants(function, truth)
    for operation, resources in calls.items():
        if operation in CONDITIONAL_CALLS and not truth[CONDITIONAL_CALLS[operation]]:
            continue
        grants |= {(action, r) for action in IAM_ACTIONS[operation] for r in resources}
    if truth["ArchiveKms"]:  # S3 asks KMS with the caller's credentials
        if "s3:PutObject" in calls:
            grants.add(("kms:GenerateDataKey", "ArchiveKmsKeyArn"))
        if "s3:GetObject" in calls:
            grants.add(("kms:Decrypt", "ArchiveKmsKeyArn"))
    return grants


# -- the role side --------------------------------------------------------------------------------
_ARN_PREFIX = re.compile(r"^arn:\$\{AWS::Partition\}:\w+:\$\{AWS::Region\}:\$\{AWS::AccountId\}:")


def resource_label(node: Any) -> str:
    if node == "*":
        return "*"
    if name := ref_name(node):
        return name
    if isinstance(node, dict) and set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
        text = re.sub(r"\$\{(\w+)\.Arn\}", r"\1", node["Fn::Sub"])
        return _ARN_PREFIX.sub("", text)
    raise AssertionError(f"resource {node!r} is not in a form this test reads")


def granted(role: dict[str, Any]) -> set[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    assert "ManagedPolicyArns" not in role["Properties"], "managed policies grant too much"
    for policy in role["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            assert "NotAction" not in statement and "NotResource" not in statement
            actions = statement["Action"]
            resources = statement["Resource"]
            for action in [actions] if isinstance(actions, str) else actions:
                assert "*" not in action, f"wildcard action {action}"
                for resource in resources if isinstance(resources, list) else [resources]:
                    label = resource_label(resource)
                    assert label != "*", f"{action} on every resource"
                    pairs.add((action, label))
    return pairs


def functions(params: dict[str, str]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(function logical id, handler module, role resource) of one deployment."""
    resources = deployed(params)
    for name, function in of_type(resources, "AWS::Lambda::Function").items():
        module = function["Properties"]["Handler"].rpartition(".")[0]
        role = ref_name(function["Properties"]["Role"])
        assert role is not None
        yield name, module, resources[role]


@pytest.mark.parametrize("config", CONFIGURATIONS)
def test_each_role_grants_exactly_what_its_function_calls(config: str) -> None:
    params = CONFIGURATIONS[config]
    truth = conditions(expanded(params), params)
    seen_roles = set()
    for function, module, role in functions(params):
        assert module in HANDLER_CALLS, f"{function}: no reviewed calls for {module}"
        assert id(role) not in seen_roles
        seen_roles.add(id(role))
        actual, expected = granted(role), expected_grants(module, function, truth)
        assert sorted(actual - expected) == [], f"{function} is granted more than it calls"
        assert sorted(expected - actual) == [], f"{function} lacks grants for calls it makes"


def test_every_role_trusts_lambda_only() -> None:
    for _, _, role in functions(CONFIGURATIONS["everything-on"]):
        [statement] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
        assert statement["Action"] == "sts:AssumeRole"


def test_the_parameter_sets_switch_every_optional_grant() -> None:
    """Both parameter sets together exercise every condition a statement depends on."""
    template = expanded(CONFIGURATIONS["everything-on"])
    values = parameter_values(template, CONFIGURATIONS["everything-on"])
    assert values["UseEnhancedFanOut"] == "true" and values["ArchiveKmsKeyArn"]
    truths = [conditions(template, p) for p in CONFIGURATIONS.values()]
    for name in ("UseEfo", "UseGlue", "StreamEncrypted", "ArchiveKms", "ProcessorEnabled"):
        assert {t[name] for t in truths} == {True, False}, name


# -- the code side --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CallSite:
    module: str
    qualname: str
    operation: str  # "dynamodb:TransactWriteItems"
    line: int

    def covered_by(self, key: str) -> bool:
        module, _, name = key.partition(":")
        return module == self.module and (
            self.qualname == name or self.qualname.startswith(name + ".")
        )


def module_file(name: str) -> Path | None:
    base = ROOT / name.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@cache
def _imports(name: str) -> frozenset[str]:
    path = module_file(name)
    assert path is not None, name
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for target in targets:
            if target.split(".")[0] in PACKAGES and module_file(target):
                found.add(target)
                parts = target.split(".")  # importing a.b.c runs a/__init__ and a/b/__init__
                found.update(
                    ".".join(parts[:i])
                    for i in range(1, len(parts))
                    if module_file(".".join(parts[:i]))
                )
    return frozenset(found)  # fmt: skip


def closure(name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(_imports(current) - seen)
    return seen


@cache
def _operations(service: str) -> dict[str, str]:
    model = get_session().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


def _receiver_tail(node: ast.expr) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _operation(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name) and call.func.id in HELPERS:
        return HELPERS[call.func.id]
    if isinstance(call.func, ast.Name) and call.func.id == "paginate":
        arg = call.args[1] if len(call.args) > 1 else None
        assert isinstance(arg, ast.Constant), f"line {call.lineno}: paginate's operation literal"
        return f"dynamodb:{arg.value}"
    if not isinstance(call.func, ast.Attribute):
        return None
    tail = _receiver_tail(call.func.value)
    services = [s for s, pattern in RECEIVERS.items() if pattern.search(tail)]
    if len(services) != 1:
        return None
    [service] = services
    method = call.func.attr
    arg = call.args[0].value if call.args and isinstance(call.args[0], ast.Constant) else None
    if method == "get_paginator" and isinstance(arg, str):
        return f"{service}:{_operations(service)[arg]}"
    if method == "get_waiter" and isinstance(arg, str):
        return f"{service}:{WAITERS[(service, arg)]}"
    if method in _operations(service):
        return f"{service}:{_operations(service)[method]}"
    return None


def call_sites(module: str) -> list[CallSite]:
    path = module_file(module)
    assert path is not None
    sites: list[CallSite] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, [*scope, child.name])
                continue
            if isinstance(child, ast.Call) and (operation := _operation(child)):
                sites.append(CallSite(module, ".".join(scope), operation, child.lineno))
            visit(child, scope)

    visit(ast.parse(path.read_text("utf-8")), [])
    return sites


def test_the_call_finder_sees_the_known_calls() -> None:
    """The finder itself: a few calls it must see, by module and operation."""
    index = {s.operation for s in call_sites("infra.index")}
    assert {"dynamodb:BatchWriteItem", "dynamodb:Query"} <= index
    claims = {s.operation for s in call_sites("infra.claims")}
    assert {"dynamodb:TransactWriteItems", "dynamodb:BatchExecuteStatement"} <= claims
    assert "s3:PutObject" in {s.operation for s in call_sites("infra.archive")}
    assert "sqs:SendMessageBatch" in {s.operation for s in call_sites("infra.targets")}
    queries = {s.operation for s in call_sites("infra.replay_queries")}
    assert {"dynamodb:Query", "dynamodb:BatchGetItem"} <= queries  # through infra.dynamo
    assert not call_sites("infra.dynamo")  # its calls are its callers'
    resources = {s.operation for s in call_sites("infra.resources")}
    assert {"dynamodb:DescribeTable", "s3:PutBucketVersioning", "sqs:CreateQueue"} <= resources


@pytest.mark.parametrize("module", sorted(HANDLER_CALLS))
def test_the_reviewed_calls_are_the_calls_the_code_makes(module: str) -> None:
    if module_file(module) is None:
        pytest.skip(f"{module} is not written yet: its calls are provisional")
    sites = [s for m in sorted(closure(module)) for s in call_sites(m)]
    exclusions = NOT_CALLED.get(module, {})
    reached = [s for s in sites if not any(s.covered_by(key) for key in exclusions)]
    made = {s.operation for s in reached}
    reviewed = set(HANDLER_CALLS[module])
    unreviewed = sorted(
        f"{s.module}:{s.qualname} line {s.line}: {s.operation}"
        for s in reached
        if s.operation not in reviewed
    )
    assert unreviewed == [], f"{module} makes calls its role does not grant"
    pending = set(PENDING.get(module, {}))
    assert sorted(pending & made) == [], "PENDING names calls the code makes now: drop them"
    missing = reviewed - made - pending
    assert sorted(missing) == [], f"{module} no longer makes these calls: drop their grants"
    stale = [key for key in exclusions if not any(s.covered_by(key) for s in sites)]
    assert stale == [], "NOT_CALLED names call sites no longer in the closure"
