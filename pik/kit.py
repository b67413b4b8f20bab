"""The composition root: settings in, wired adapters and use cases out."""

from __future__ import annotations

from dataclasses import dataclass, field

from consumers.ingest import IngestSink
from infra.archive import ArchiveReader, S3RawArchive
from infra.aws import AwsClients
from infra.clock import Clock, SystemClock
from infra.errors import ConfigError
from infra.index import DynamoEventIndex
from infra.metrics import Metrics
from infra.resources import Bootstrap, ResourceNames
from pik.schema_policy import load_schema_policy
from pik.settings import Settings
from schemas.registry import RegistryError, SchemaRegistry


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
    reader: ArchiveReader = field(init=False)

    def __post_init__(self) -> None:
        self.reader = ArchiveReader(self.archive)

    def bootstrap(self) -> Bootstrap:
        return Bootstrap(self.clients, self.names)


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
