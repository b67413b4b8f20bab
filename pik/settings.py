"""Settings: one object, built once at the entry point, from the environment and flags.

Standard AWS variables (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_PROFILE``), ``PIK_*`` for the
kit's own names and limits, ``DRY_RUN``, and an optional TOML config file (``PIK_CONFIG``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.aws import AwsConfig
from infra.resources import ResourceNames
from schemas.envelope import DEFAULT_MAX_EVENT_BYTES

DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024


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
    max_event_bytes: int = Field(DEFAULT_MAX_EVENT_BYTES, gt=0)
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, gt=0)
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
