"""The composition root: settings in, wired adapters and use cases out."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consumers.ingest import IngestSink
from consumers.tap.binding import Format, TapBinding
from consumers.tap.decode import RecordDecoder
from infra.archive import ArchiveReader, S3RawArchive
from infra.aws import AwsClients
from infra.clock import Clock, SystemClock
from infra.errors import ConfigError
from infra.index import DynamoEventIndex
from infra.metrics import Metrics
from infra.resources import Bootstrap, ResourceNames
from infra.schema_registry import (
    ConfluentSchemaSource,
    GlueSchemaSource,
    RegistryCredentials,
    confluent_client,
)
from pik.schema_policy import load_schema_policy
from pik.settings import Settings
from schemas.registry import RegistryError, SchemaRegistry
from schemas.remote import RemoteSchemas

ConfluentClients = Callable[[str, RegistryCredentials], Any]


@dataclass
class Kit:
    settings: Settings
    clients: AwsClients
    names: ResourceNames
    archive: S3RawArchive
    index: DynamoEventIndex
    metrics: Metrics
    clock: Clock
    sink: IngestSink
    # The one schema registry of the kit (``[schemas] registry``): the tap, ingest validation
    # and ``pik schemas`` all read it.
    registry: SchemaRegistry = field(default_factory=SchemaRegistry)
    # How a binding's registry_url becomes a client (tests give mock:// clients they hold).
    confluent_clients: ConfluentClients = confluent_client
    reader: ArchiveReader = field(init=False)
    _remote: dict[tuple[str, ...], RemoteSchemas[Any]] = field(init=False, default_factory=dict)
    _remote_lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.reader = ArchiveReader(self.archive)

    def remote_schemas(self, binding: TapBinding) -> RemoteSchemas[Any] | None:
        """The binding's remote registry with its cache, one per registry for the process (the
        folder's entries first), or None when the binding reads the folder alone."""
        with self._remote_lock:
            if binding.format is Format.AVRO_CONFLUENT and binding.registry_url is not None:
                key: tuple[str, ...] = ("confluent", binding.registry_url)
                if key not in self._remote:
                    url = binding.registry_url
                    client = self.confluent_clients(url, registry_credentials(self.settings))
                    known = [(e.schema_id, e) for e in self.registry if e.schema_id is not None]
                    self._remote[key] = RemoteSchemas(ConfluentSchemaSource(client, url), known)
                return self._remote[key]
            if binding.format is Format.AVRO_GLUE:
                key = ("glue",)
                if key not in self._remote:
                    self._remote[key] = RemoteSchemas(GlueSchemaSource(self.clients.client("glue")))
                return self._remote[key]
        return None

    def decoder(self, binding: TapBinding) -> RecordDecoder:
        """How the tap reads the binding's records: the kit's registry, and its remote one."""
        return RecordDecoder(
            binding,
            self.registry,
            max_event_bytes=self.settings.max_event_bytes,
            remote=self.remote_schemas(binding),
        )

    def bootstrap(self) -> Bootstrap:
        return Bootstrap(self.clients, self.names)


def registry_credentials(settings: Settings) -> RegistryCredentials:
    """A Confluent-compatible registry's credentials, from the settings (the environment)."""
    s = settings
    return RegistryCredentials(
        user=s.registry_user,
        password=s.registry_password.get_secret_value() if s.registry_password else None,
        token=s.registry_token.get_secret_value() if s.registry_token else None,
        logical_cluster=s.registry_logical_cluster,
    )


def build_kit(
    settings: Settings, clock: Clock | None = None, *, clients: AwsClients | None = None
) -> Kit:
    """``clients`` replaces the clients made from ``settings.aws()`` (other retries, hooks)."""
    clients = clients or AwsClients(settings.aws())
    names = settings.names()
    archive = S3RawArchive(clients.s3(), names.bucket)
    index = DynamoEventIndex(clients.dynamodb(), names.events_table)
    metrics = Metrics()
    clock = clock or SystemClock()
    policy = load_schema_policy(settings.config)
    try:
        registry = policy.load_registry()
    except RegistryError as exc:
        raise ConfigError(f"schema registry: {exc}") from exc
    validator = policy.validator(registry)
    sink = IngestSink(archive, index, clock, metrics, dry_run=settings.dry_run, validator=validator)
    return Kit(settings, clients, names, archive, index, metrics, clock, sink, registry)
