"""Every AWS client the kit uses comes from one ``AwsClients``, built from one ``AwsConfig``.

One ``endpoint_url`` switches the whole kit between the embedded backend and real AWS; without
it boto3's standard credential chain and endpoints apply.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass(frozen=True, slots=True)
class AwsConfig:
    region: str = "us-east-1"
    endpoint_url: str | None = None
    profile: str | None = None
    max_attempts: int = 8
    max_pool_connections: int = 32
    connect_timeout: float = 5.0
    read_timeout: float = 30.0


class AwsClients:
    """Lazily built, cached, thread-safe boto3 clients (boto3 clients may be shared by threads)."""

    def __init__(self, config: AwsConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._session = boto3.session.Session(
            profile_name=config.profile, region_name=config.region
        )

    def _make(self, service: str) -> Any:
        config = Config(
            retries={"max_attempts": self.config.max_attempts, "mode": "standard"},
            max_pool_connections=self.config.max_pool_connections,
            connect_timeout=self.config.connect_timeout,
            read_timeout=self.config.read_timeout,
        )
        kwargs: dict[str, Any] = {"config": config}
        if self.config.endpoint_url:
            kwargs["endpoint_url"] = self.config.endpoint_url
            if self._session.get_credentials() is None:
                kwargs.update(LOCAL_CREDENTIALS)
        return self._session.client(service, **kwargs)  # type: ignore[call-overload]

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self._make(service)
            return self._clients[service]

    def s3(self) -> Any:
        return self.client("s3")

    def dynamodb(self) -> Any:
        return self.client("dynamodb")

    def sqs(self) -> Any:
        return self.client("sqs")

    def kinesis(self) -> Any:
        return self.client("kinesis")
