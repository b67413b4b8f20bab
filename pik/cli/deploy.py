"""``pik deploy``: the commands that build and deploy the kit to AWS with the SAM template.

By default the commands are printed (to read, adapt or paste into CI); with ``--run`` they are
run, one after the other, stopping at the first failure, when the SAM CLI is on ``PATH``.

The build is plain pip, not ``sam build``: the project's wheel and its dependencies are
installed for Lambda's platform into ``build/lambda``, which is the ``CodeUri`` of every
function in ``infra/template.yaml``; ``sam deploy`` zips and uploads it. The deployment needs a
source checkout (the template is not part of the installed package).
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr

from infra.errors import ConfigError, KitError
from pik.cli.common import commands, fail, load_settings, print_json
from pik.config import uses_glue_registry
from pik.settings import Settings

__all__ = [
    "BUILD_DIR",
    "LAMBDA_ARCHITECTURE",
    "LAMBDA_PLATFORM",
    "LAMBDA_PYTHON",
    "TEMPLATE",
    "DeployPlan",
    "app",
    "template_parameters",
]

# Must match the template's Globals (Runtime python3.12, Architectures x86_64): the wheels pip
# picks are for this interpreter and platform. tests/integration/test_template.py checks it.
LAMBDA_PYTHON = "3.12"
LAMBDA_ARCHITECTURE = "x86_64"
LAMBDA_PLATFORM = "manylinux2014_x86_64"
TEMPLATE = Path("infra/template.yaml")
BUILD_DIR = Path("build/lambda")  # the template's CodeUri (../build/lambda from infra/)
WHEEL_DIR = Path("build/wheels")
DISTRIBUTION = "pipeline-investigation-kit"
DEFAULT_STACK = "pik"
# Secret template parameters and the variable each comes from: printed commands show the
# variable (unquoted, so the shell expands it), never the value.
SECRET_PARAMETERS = {
    "ApiToken": "PIK_API_TOKEN",
    "RegistryPassword": "PIK_REGISTRY_PASSWORD",
    "RegistryToken": "PIK_REGISTRY_TOKEN",
}


def placeholder(parameter: str) -> str:
    return f'"${SECRET_PARAMETERS[parameter]}"'


CHOICES = {
    "ApiAuth": ("IAM", "TOKEN"),
    "StartingPosition": ("TRIM_HORIZON", "LATEST"),
    "EnableProcessor": ("true", "false"),
    "UseEnhancedFanOut": ("true", "false"),
}

_PARAMETER = re.compile(r"^  ([A-Za-z0-9]+):\s*$")
_STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,100}$")
_STREAM_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:kinesis:[a-z0-9-]+:[0-9]{12}:stream/[a-zA-Z0-9_.-]+$")


class DeployError(KitError, ValueError):
    """A deployment request that cannot be turned into commands (the reason is the message)."""


def project_root() -> Path:
    """The source checkout this module runs from (where ``infra/template.yaml`` lives)."""
    return Path(__file__).resolve().parents[2]


def template_parameters(template: Path) -> tuple[str, ...]:
    """The names under the template's top-level ``Parameters:`` key, in order.

    Read from the text (two-space indented keys), so no YAML library with CloudFormation's
    short-form tags is needed at run time.
    """
    names: list[str] = []
    inside = False
    for line in template.read_text("utf-8").splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            inside = line.rstrip() == "Parameters:"
            continue
        if inside and (match := _PARAMETER.match(line)):
            names.append(match.group(1))
    return tuple(names)


def _wheel_name() -> str:
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = "0.1.0"
    return f"{DISTRIBUTION.replace('-', '_')}-{version}-py3-none-any.whl"


@dataclass(frozen=True)
class DeployPlan:
    """A stack name, region and template parameters; ``commands`` turns them into argv lists."""

    stack_name: str
    parameters: dict[str, str]
    region: str | None = None
    config: Path | None = None
    python: str = field(default_factory=lambda: sys.executable)

    def validate(self, known: tuple[str, ...]) -> None:
        if not _STACK_NAME.match(self.stack_name):
            raise DeployError(
                f"stack name {self.stack_name!r}: letters, digits and hyphens, starting with a letter"
            )
        unknown = sorted(set(self.parameters) - set(known))
        if unknown:
            raise DeployError(
                f"unknown template parameter(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
        for key, allowed in CHOICES.items():
            if key in self.parameters and self.parameters[key] not in allowed:
                raise DeployError(f"{key} {self.parameters[key]!r}: one of {', '.join(allowed)}")
        arn = self.parameters.get("StreamArn", "")
        if not _STREAM_ARN.match(arn):
            raise DeployError(
                f"--stream-arn {arn!r} is not a Kinesis stream ARN "
                "(arn:aws:kinesis:REGION:ACCOUNT:stream/NAME)"
            )
        stream_region = arn.split(":")[3]
        if self.region and self.region != stream_region:
            raise DeployError(
                f"region {self.region} differs from the stream's ({stream_region}): an event "
                "source mapping reads a stream in its own region"
            )
        if self.parameters.get("ApiAuth") == "TOKEN" and not self.parameters.get("ApiToken"):
            raise DeployError("--api-auth TOKEN needs PIK_API_TOKEN set to the token")
        p = self.parameters
        if bool(p.get("RegistryUser")) != bool(p.get("RegistryPassword")):
            raise DeployError("PIK_REGISTRY_USER and PIK_REGISTRY_PASSWORD go together")
        if p.get("RegistryToken") and p.get("RegistryUser"):
            raise DeployError(
                "set PIK_REGISTRY_TOKEN or PIK_REGISTRY_USER/PIK_REGISTRY_PASSWORD, not both"
            )
        if self.config is not None and not self.config.is_file():
            raise DeployError(f"config file {self.config} does not exist")

    def overrides(self, *, reveal_secrets: bool) -> list[str]:
        out = []
        for key, value in self.parameters.items():
            if key in SECRET_PARAMETERS and not reveal_secrets:
                out.append(f"{key}={placeholder(key)}")
            else:
                out.append(f"{key}={value}")
        return out

    def commands(self, *, reveal_secrets: bool = False) -> list[list[str]]:
        """Build (pip, for Lambda's platform) then deploy (SAM), run from the project root."""
        wheel = WHEEL_DIR / _wheel_name()
        steps: list[list[str]] = [
            ["rm", "-rf", str(BUILD_DIR), str(WHEEL_DIR)],
            [self.python, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(WHEEL_DIR), "."],
            [
                self.python, "-m", "pip", "install", "--quiet",
                "--target", str(BUILD_DIR),
                "--platform", LAMBDA_PLATFORM,
                "--implementation", "cp",
                "--python-version", LAMBDA_PYTHON,
                "--only-binary=:all:",
                str(wheel),
            ],
        ]  # fmt: skip
        if self.config is not None:
            steps.append(["cp", str(self.config), str(BUILD_DIR / self.config.name)])
        deploy = [
            "sam", "deploy",
            "--template-file", str(TEMPLATE),
            "--stack-name", self.stack_name,
            "--capabilities", "CAPABILITY_IAM",
            "--resolve-s3",
            "--no-fail-on-empty-changeset",
        ]  # fmt: skip
        if self.region:
            deploy += ["--region", self.region]
        deploy += ["--parameter-overrides", *self.overrides(reveal_secrets=reveal_secrets)]
        steps.append(deploy)
        return steps

    def to_json(self) -> dict[str, Any]:
        shown = {
            k: (placeholder(k) if k in SECRET_PARAMETERS else v) for k, v in self.parameters.items()
        }
        return {
            "stack_name": self.stack_name,
            "region": self.region,
            "template": str(TEMPLATE),
            "parameters": shown,
            "commands": self.commands(),
        }


def _shell_line(argv: list[str]) -> str:
    # A secret's placeholder stays unquoted so that the shell expands it.
    shown = tuple(placeholder(k) for k in SECRET_PARAMETERS)
    return " ".join(a if a.endswith(shown) else shlex.quote(a) for a in argv)


def _registry_parameters(settings: Settings) -> dict[str, str]:
    """The tap's schema registry credentials, from the same variables ``pik tap`` reads."""
    given = {
        "RegistryUser": settings.registry_user,
        "RegistryPassword": settings.registry_password,
        "RegistryToken": settings.registry_token,
        "RegistryLogicalCluster": settings.registry_logical_cluster,
    }
    return {
        k: v.get_secret_value() if isinstance(v, SecretStr) else v for k, v in given.items() if v
    }


def _arn_region(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[3] else None


def _extra_parameters(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DeployError(f"--parameter {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


app = commands()


@app.command()
def deploy(
    stream_arn: Annotated[
        str, typer.Option(help="ARN of the existing Kinesis stream the tap attaches to.")
    ],
    stack_name: Annotated[
        str, typer.Option(help="CloudFormation stack name (prefixes resource names).")
    ] = DEFAULT_STACK,
    region: Annotated[str | None, typer.Option(help="AWS region (default: the stream's).")] = None,
    api_auth: Annotated[
        str, typer.Option(help="IAM (SigV4) or TOKEN (bearer token from PIK_API_TOKEN).")
    ] = "IAM",
    enable_processor: Annotated[
        bool, typer.Option(help="Run the aggregate processor on the replay queue.")
    ] = False,
    efo: Annotated[
        bool, typer.Option("--efo", help="Read through an enhanced fan-out consumer.")
    ] = False,
    starting_position: Annotated[
        str, typer.Option(help="TRIM_HORIZON (all the stream retains) or LATEST.")
    ] = "TRIM_HORIZON",
    config: Annotated[
        Path | None,
        typer.Option(help="Config file (tap bindings, aggregates) to ship with the functions."),
    ] = None,
    alarm_topic_arn: Annotated[
        str | None, typer.Option(help="SNS topic the alarms notify.")
    ] = None,
    parameter: Annotated[
        list[str] | None,
        typer.Option(help="Any other template parameter, KEY=VALUE (repeatable)."),
    ] = None,
    run: Annotated[
        bool, typer.Option("--run", help="Run the commands (needs the SAM CLI on PATH).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (for scripts).")
    ] = False,
) -> None:
    """Print (or, with --run, run) the commands that build the functions and deploy the stack."""

    settings = load_settings()
    root = project_root()
    if not (root / TEMPLATE).is_file():
        fail(f"{TEMPLATE} not found under {root}: run `pik deploy` from a source checkout", 2)
    params: dict[str, str] = {
        "StreamArn": stream_arn,
        "ApiAuth": api_auth.upper(),
        "EnableProcessor": str(enable_processor).lower(),
        "UseEnhancedFanOut": str(efo).lower(),
        "StartingPosition": starting_position.upper(),
    }
    if config is not None:
        params["ConfigFile"] = config.name
        try:  # an avro-glue binding: the tap's role may call glue:GetSchemaVersion
            if uses_glue_registry(config):
                params["UseGlueSchemaRegistry"] = "true"
        except ConfigError as exc:
            fail(str(exc), 2)
    if alarm_topic_arn:
        params["AlarmTopicArn"] = alarm_topic_arn
    if params["ApiAuth"] == "TOKEN" and settings.api_token is not None:
        params["ApiToken"] = settings.api_token.get_secret_value()
    params.update(_registry_parameters(settings))
    try:
        params.update(_extra_parameters(parameter or []))
        plan = DeployPlan(
            stack_name=stack_name,
            parameters=params,
            region=region or _arn_region(stream_arn),
            config=config.resolve() if config is not None else None,
        )
        plan.validate(template_parameters(root / TEMPLATE))
    except DeployError as exc:
        fail(str(exc), 2)
    if not run:
        if as_json:
            print_json({**plan.to_json(), "ran": False, "cwd": str(root)})
        else:
            sys.stdout.write(f"cd {shlex.quote(str(root))}\n")
            for argv in plan.commands():
                sys.stdout.write(_shell_line(argv) + "\n")
        return
    if shutil.which("sam") is None:
        fail("the SAM CLI (`sam`) is not on PATH: install it, or run the printed commands", 2)
    for argv in plan.commands(reveal_secrets=True):
        if not as_json:  # echoed like `set -x`, secrets masked
            sys.stderr.write("+ " + _shell_line(_masked(argv, plan)) + "\n")
        done = subprocess.run(argv, cwd=root, check=False)
        if done.returncode != 0:
            fail(f"`{argv[0]} {argv[1] if len(argv) > 1 else ''}` exited {done.returncode}")
    if as_json:
        print_json({**plan.to_json(), "ran": True, "cwd": str(root)})


def _masked(argv: list[str], plan: DeployPlan) -> list[str]:
    secrets = {plan.parameters[k]: k for k in SECRET_PARAMETERS if plan.parameters.get(k)}
    out = []
    for a in argv:
        name, _, value = a.partition("=")
        out.append(f"{name}={placeholder(secrets[value])}" if value in secrets else a)
    return out
