"""Settings: one object, built once at the entry point, from the environment and flags.

Standard AWS variables (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_PROFILE``), ``PIK_*`` for the
kit's own names and limits, ``DRY_RUN``, and an optional TOML config file (``PIK_CONFIG``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.aws import AwsConfig
from infra.resources import ResourceNames
from schemas.envelope import DEFAULT_MAX_EVENT_BYTES

DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_BATCH_ITEMS = 10_000


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PIK_", extra="ignore", populate_by_name=True)

    endpoint_url: str | None = Field(
        None, validation_alias=AliasChoices("AWS_ENDPOINT_URL", "PIK_ENDPOINT_URL")
    )
    region: str = Field(
        "us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    profile: str | None = Field(None, validation_alias=AliasChoices("AWS_PROFILE"))
    dry_run: bool = Field(False, validation_alias=AliasChoices("DRY_RUN", "PIK_DRY_RUN"))

    bucket: str = "pik-raw"
    events_table: str = "pik-events"
    leases_table: str = "pik-leases"
    replay_jobs_table: str = "pik-replay-jobs"
    aggregates_table: str = "pik-aggregates"
    replay_queue: str = "pik-replay"
    replay_dlq: str = "pik-replay-dlq"
    demo_stream: str = "pik-demo"

    api_token: SecretStr | None = None
    # A Confluent-compatible schema registry's credentials (a binding's registry_url): from the
    # environment only, never the config file. Basic auth, or a bearer token.
    registry_user: str | None = None
    registry_password: SecretStr | None = None
    registry_token: SecretStr | None = None
    registry_logical_cluster: str | None = None  # Confluent Cloud: the target-sr-cluster header
    max_event_bytes: int = Field(DEFAULT_MAX_EVENT_BYTES, gt=0)
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, gt=0)
    max_batch_items: int = Field(DEFAULT_MAX_BATCH_ITEMS, gt=0)
    body_timeout_s: float = Field(30.0, gt=0)  # a request's whole body must arrive in this
    config: Path | None = None
    log_level: str = "INFO"

    def aws(self) -> AwsConfig:
        return AwsConfig(region=self.region, endpoint_url=self.endpoint_url, profile=self.profile)

    def names(self) -> ResourceNames:
        return ResourceNames(
            bucket=self.bucket,
            events_table=self.events_table,
            leases_table=self.leases_table,
            replay_jobs_table=self.replay_jobs_table,
            aggregates_table=self.aggregates_table,
            replay_queue=self.replay_queue,
            replay_dlq=self.replay_dlq,
            demo_stream=self.demo_stream,
        )

    @classmethod
    def variables(cls, field: str) -> list[str]:
        """The environment variables that set ``field`` (a field name, or one of its aliases as a
        validation error's location gives it), in the order they are looked up."""
        prefix = cls.model_config.get("env_prefix", "")
        for name, info in cls.model_fields.items():
            alias = info.validation_alias
            choices = [alias] if isinstance(alias, str) else []
            if isinstance(alias, AliasChoices):
                choices = [c for c in alias.choices if isinstance(c, str)]
            if field == name or field in choices:
                return choices or [f"{prefix}{name}".upper()]
        return [field]


def describe_errors(exc: ValidationError, environ: Mapping[str, str]) -> str:
    """``exc`` in the operator's words: each bad value named by the variable that was set
    (``PIK_MAX_EVENT_BYTES``, not ``max_event_bytes``), never by its value (it may be a secret)."""
    given = {key.upper() for key in environ}
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        names = Settings.variables(field)
        variable = next((n for n in names if n.upper() in given), names[0])
        problems.append(f"{variable}: {error['msg']}")
    return "; ".join(problems)
