"""Every AWS client the kit uses comes from one ``AwsClients``, built from one ``AwsConfig``.

One ``endpoint_url`` switches the whole kit between the embedded backend and real AWS; without
it boto3's standard credential chain and endpoints apply. As in boto3, a service's own endpoint
variable wins over the kit-wide one: with ``AWS_ENDPOINT_URL_KINESIS`` set, Kinesis calls go
there and the other services to ``endpoint_url`` (how the reliability suite points only Kinesis
at a faithful emulator).

``on_client`` sees every client right after it is made (``(service_name, client)``), e.g. to
register botocore event handlers (``infra/faults.py`` injects faults this way).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
SERVICE_ENDPOINT_PREFIX = "AWS_ENDPOINT_URL_"  # boto3's per-service variable: ..._KINESIS

ClientHook = Callable[[str, Any], None]


@dataclass(frozen=True, slots=True)
class AwsConfig:
    region: str = "us-east-1"
    endpoint_url: str | None = None
    profile: str | None = None
    max_attempts: int = 8
    max_pool_connections: int = 32
    connect_timeout: float = 5.0
    read_timeout: float = 30.0


def service_endpoints(environ: Mapping[str, str]) -> dict[str, str]:
    """``AWS_ENDPOINT_URL_<SERVICE>`` variables → {service name: endpoint URL}."""
    return {
        name[len(SERVICE_ENDPOINT_PREFIX) :].lower(): url
        for name, url in environ.items()
        if name.startswith(SERVICE_ENDPOINT_PREFIX) and url
    }


class AwsClients:
    """Lazily built, cached, thread-safe boto3 clients (boto3 clients may be shared by threads).

    ``environ`` is read once, here, for the per-service endpoint variables (default: the
    process environment).
    """

    def __init__(
        self,
        config: AwsConfig,
        *,
        on_client: ClientHook | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.on_client = on_client
        self.endpoints = service_endpoints(os.environ if environ is None else environ)
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._session = boto3.session.Session(
            profile_name=config.profile, region_name=config.region
        )

    def endpoint_for(self, service: str) -> str | None:
        """Where ``service``'s calls go: its own endpoint, else the kit's, else AWS's."""
        return self.endpoints.get(service) or self.config.endpoint_url

    def _make(self, service: str) -> Any:
        config = Config(
            retries={"max_attempts": self.config.max_attempts, "mode": "standard"},
            max_pool_connections=self.config.max_pool_connections,
            connect_timeout=self.config.connect_timeout,
            read_timeout=self.config.read_timeout,
        )
        kwargs: dict[str, Any] = {"config": config}
        endpoint = self.endpoint_for(service)
        if endpoint:
            kwargs["endpoint_url"] = endpoint
            if self._session.get_credentials() is None:
                kwargs.update(LOCAL_CREDENTIALS)
        return self._session.client(service, **kwargs)  # type: ignore[call-overload]

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                made = self._make(service)
                if self.on_client is not None:
                    self.on_client(service, made)
                self._clients[service] = made
            return self._clients[service]

    def s3(self) -> Any:
        return self.client("s3")

    def dynamodb(self) -> Any:
        return self.client("dynamodb")

    def sqs(self) -> Any:
        return self.client("sqs")

    def kinesis(self) -> Any:
        return self.client("kinesis")
