"""Adapters to remote schema registries: Confluent-compatible Schema Registry (confluent-kafka's
``SchemaRegistryClient``, which also serves ``mock://`` URLs in-process) and AWS Glue Schema
Registry (boto3 ``glue:GetSchemaVersion``).

Each implements the ``SchemaSource`` port of ``schemas/remote.py``: ``lookup(key)`` answers a
``RemoteSchema``, ``None`` when the registry says it does not know the key, or raises
``RegistryUnavailable`` when it cannot answer (unreachable, 5xx, throttled, refusing the
credentials). Errors are translated here; nothing above sees httpx, confluent-kafka or botocore.

Credentials never come from the config file: the kit builds ``RegistryCredentials`` from the
environment (``PIK_REGISTRY_USER`` / ``PIK_REGISTRY_PASSWORD`` for HTTP basic auth,
or ``PIK_REGISTRY_TOKEN`` for a bearer token, with ``PIK_REGISTRY_LOGICAL_CLUSTER`` for
Confluent Cloud's ``target-sr-cluster`` header).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from infra.errors import BackendError, ConfigError
from schemas.remote import RemoteSchema

# The client retries a failed call itself (briefly); longer outages are the tap's backoff.
CONFLUENT_CLIENT_RETRIES = 2
CONFLUENT_RETRY_WAIT_MS = 200
CONFLUENT_RETRY_MAX_WAIT_MS = 2_000
CONFLUENT_TIMEOUT_S = 10.0
HTTP_NOT_FOUND = 404
GLUE_NOT_FOUND = "EntityNotFoundException"


class RegistryUnavailable(BackendError):
    """A remote schema registry could not answer: retrying later may work (records wait)."""


@dataclass(frozen=True, slots=True)
class RegistryCredentials:
    """Basic auth or a bearer token for a Confluent-compatible registry, or none."""

    user: str | None = None
    password: str | None = None
    token: str | None = None
    logical_cluster: str | None = None

    def __post_init__(self) -> None:
        if self.token is not None and (self.user is not None or self.password is not None):
            raise ConfigError(
                "schema registry credentials: set PIK_REGISTRY_TOKEN or "
                "PIK_REGISTRY_USER/PIK_REGISTRY_PASSWORD, not both"
            )
        if (self.user is None) != (self.password is None):
            raise ConfigError(
                "schema registry credentials: PIK_REGISTRY_USER and PIK_REGISTRY_PASSWORD "
                "go together"
            )

    def __repr__(self) -> str:  # never print a secret
        kind = "token" if self.token else "basic" if self.user else "none"
        return f"RegistryCredentials({kind})"

    def client_conf(self) -> dict[str, Any]:
        if self.user is not None and self.password is not None:
            return {"basic.auth.user.info": f"{self.user}:{self.password}"}
        if self.token is not None:
            fields = {
                "bearer.auth.token": self.token,
                "bearer.auth.logical.cluster": self.logical_cluster or "",
            }
            return {
                "bearer.auth.credentials.source": "CUSTOM",
                "bearer.auth.custom.provider.function": lambda _conf: fields,
                "bearer.auth.custom.provider.config": {},
            }
        return {}


def check_registry_url(url: str, where: str) -> None:
    """A ``registry_url`` is http(s) (or ``mock://`` for tests) and carries no credentials."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http", "mock") or not parts.netloc:
        raise ConfigError(f"{where}: registry_url {url!r} is not an http(s):// URL")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"{where}: registry_url must not carry credentials; set PIK_REGISTRY_USER and "
            "PIK_REGISTRY_PASSWORD (or PIK_REGISTRY_TOKEN) in the environment"
        )


ClientFactory = Callable[[dict[str, Any]], Any]


def confluent_client(url: str, credentials: RegistryCredentials) -> Any:
    """confluent-kafka's client for ``url`` (``mock://...``: its in-process mock)."""
    try:
        from confluent_kafka.schema_registry import SchemaRegistryClient
    except ImportError as exc:
        raise ConfigError(
            "registry_url needs confluent-kafka's registry client: "
            "pip install 'confluent-kafka[schemaregistry]' (or the kit's [confluent] extra)"
        ) from exc

    conf: dict[str, Any] = {"url": url}
    if not url.startswith("mock://"):
        conf.update(
            {
                "max.retries": CONFLUENT_CLIENT_RETRIES,
                "retries.wait.ms": CONFLUENT_RETRY_WAIT_MS,
                "retries.max.wait.ms": CONFLUENT_RETRY_MAX_WAIT_MS,
                "timeout": CONFLUENT_TIMEOUT_S,
                **credentials.client_conf(),
            }
        )
    try:
        return SchemaRegistryClient.new_client(conf)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"schema registry {url}: {exc}") from exc


class ConfluentSchemaSource:
    """Schemas by Confluent schema id: ``GET /schemas/ids/{id}`` through the client."""

    def __init__(self, client: Any, url: str) -> None:
        self._client = client
        self.url = url

    def lookup(self, key: int) -> RemoteSchema | None:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema = self._client.get_schema(key)
        except SchemaRegistryError as exc:
            if exc.http_status_code == HTTP_NOT_FOUND:
                return None
            raise RegistryUnavailable(
                f"schema registry {self.url}: schema id {key}: {exc}",
                service="schema-registry",
                code=str(exc.http_status_code),
            ) from exc
        except Exception as exc:  # httpx transport errors, timeouts, a bad answer
            raise RegistryUnavailable(
                f"schema registry {self.url} unreachable for schema id {key}: "
                f"{type(exc).__name__}: {exc}",
                service="schema-registry",
            ) from exc
        return RemoteSchema(
            definition=schema.schema_str,
            ref=f"confluent schema id {key} at {self.url}",
            data_format=schema.schema_type or "AVRO",
        )

    # -- pik schemas --------------------------------------------------------------------------
    def subjects(self) -> list[str]:
        return sorted(self._call("list subjects", self._client.get_subjects))

    def versions(self, subject: str) -> list[tuple[int, int, str]]:
        """A subject's versions, oldest first: (version, schema id, schema text)."""
        numbers = self._call(f"versions of {subject}", self._client.get_versions, subject)
        out = []
        for number in sorted(numbers):
            found = self._call(
                f"{subject} version {number}", self._client.get_version, subject, number
            )
            out.append((found.version, found.schema_id, found.schema.schema_str))
        return out

    def compatibility(self, subject: str) -> str | None:
        """The subject's compatibility level, else the registry's global one (None: unset)."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        for args in ((subject,), ()):
            try:
                level = self._client.get_compatibility(*args)
            except SchemaRegistryError as exc:
                if exc.http_status_code == HTTP_NOT_FOUND:
                    continue
                raise RegistryUnavailable(f"schema registry {self.url}: config: {exc}") from exc
            except Exception as exc:
                raise RegistryUnavailable(
                    f"schema registry {self.url} unreachable: config: {type(exc).__name__}: {exc}"
                ) from exc
            return str(getattr(level, "value", level))
        return None

    def _call(self, what: str, call: Callable[..., Any], *args: Any) -> Any:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            return call(*args)
        except SchemaRegistryError as exc:
            if exc.http_status_code == HTTP_NOT_FOUND:
                raise ConfigError(f"schema registry {self.url}: {what}: {exc}") from exc
            raise RegistryUnavailable(f"schema registry {self.url}: {what}: {exc}") from exc
        except Exception as exc:
            raise RegistryUnavailable(
                f"schema registry {self.url} unreachable: {what}: {type(exc).__name__}: {exc}"
            ) from exc


class GlueSchemaSource:
    """Schemas by Glue schema version id (a UUID): ``glue:GetSchemaVersion``."""

    def __init__(self, glue: Any) -> None:
        self._glue = glue

    def lookup(self, key: bytes) -> RemoteSchema | None:
        """``key``: the 16 bytes of the version UUID, as the framing carries them."""
        version_id = uuid.UUID(bytes=key)
        answer = self._get(f"schema version {version_id}", SchemaVersionId=str(version_id))
        return None if answer is None else glue_schema(answer)

    def versions(self, registry: str, schema: str) -> list[tuple[int, str, str]]:
        """A Glue schema's versions, oldest first: (version number, version id, definition),
        by GetSchemaVersion alone (the one call the tap's role is granted)."""
        schema_id = {"RegistryName": registry, "SchemaName": schema}
        latest = self._get(
            f"schema {registry}/{schema}",
            SchemaId=schema_id,
            SchemaVersionNumber={"LatestVersion": True},
        )
        if latest is None:
            raise ConfigError(f"Glue schema {registry}/{schema} does not exist")
        out = []
        for number in range(1, int(latest["VersionNumber"]) + 1):
            found = self._get(
                f"schema {registry}/{schema} v{number}",
                SchemaId=schema_id,
                SchemaVersionNumber={"VersionNumber": number},
            )
            if found is not None:  # a deleted version leaves a gap
                out.append((number, found["SchemaVersionId"], found["SchemaDefinition"]))
        return out

    def schema_names(self, registry: str) -> list[str]:
        """Every schema of a Glue registry (``glue:ListSchemas``: ``pik schemas`` only)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            pages = self._glue.get_paginator("list_schemas").paginate(
                RegistryId={"RegistryName": registry}
            )
            return sorted(s["SchemaName"] for page in pages for s in page.get("Schemas", []))
        except (ClientError, BotoCoreError) as exc:
            raise RegistryUnavailable(
                f"Glue Schema Registry: list schemas of {registry}: {exc}", service="glue"
            ) from exc

    def compatibility(self, registry: str, schema: str) -> str | None:
        """A Glue schema's compatibility (``glue:GetSchema``: ``pik schemas`` only)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self._glue.get_schema(
                SchemaId={"RegistryName": registry, "SchemaName": schema}
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == GLUE_NOT_FOUND:
                raise ConfigError(f"Glue schema {registry}/{schema} does not exist") from exc
            raise RegistryUnavailable(f"Glue Schema Registry: {exc}", service="glue") from exc
        except BotoCoreError as exc:
            raise RegistryUnavailable(f"Glue Schema Registry: {exc}", service="glue") from exc
        level = answer.get("Compatibility")
        return str(level) if level else None

    def _get(self, what: str, **kwargs: Any) -> dict[str, Any] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer: dict[str, Any] = self._glue.get_schema_version(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == GLUE_NOT_FOUND:
                return None
            raise RegistryUnavailable(
                f"Glue Schema Registry: {what}: {code}: {exc}", service="glue", code=code
            ) from exc
        except BotoCoreError as exc:
            raise RegistryUnavailable(
                f"Glue Schema Registry unreachable: {what}: {exc}", service="glue"
            ) from exc
        return answer


def glue_schema(answer: dict[str, Any]) -> RemoteSchema:
    """A GetSchemaVersion answer: the registry and schema name come from its SchemaArn
    (``arn:aws:glue:REGION:ACCOUNT:schema/REGISTRY/SCHEMA``)."""
    _, _, path = str(answer.get("SchemaArn", "")).partition(":schema/")
    registry, _, schema = path.partition("/")
    version = int(answer.get("VersionNumber") or 0)
    return RemoteSchema(
        definition=str(answer.get("SchemaDefinition", "")),
        ref=f"glue:{registry}/{schema}/v{version} ({answer.get('SchemaVersionId')})",
        source=registry or None,
        event_type=schema or None,
        version=version,
        data_format=str(answer.get("DataFormat") or "AVRO"),
    )
