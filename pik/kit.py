"""The composition root: settings in, wired adapters and use cases out.

``build_kit`` reads the config file once (``KitConfig``: tap bindings, aggregate definitions,
schema policy and registry) and wires the adapters. Every use case is built from the kit —
tap workers, the replay service, the processor, the investigator, lineage — so the CLI, the
HTTP app and the Lambda handlers only ask the kit; none parses config or builds an adapter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from consumers.ingest import IngestSink
from consumers.processor import Processor
from consumers.reindex import file_entries
from consumers.tap.binding import Format, TapBinding, stream_name
from consumers.tap.decode import RecordDecoder
from consumers.tap.fanout import DEFAULT_CONSUMER_NAME, FanOut
from consumers.tap.worker import TapOptions, TapWorker
from infra.aggregates import DynamoAggregates
from infra.archive import ArchiveReader, S3RawArchive
from infra.aws import AwsClients
from infra.clock import Clock, SystemClock
from infra.errors import ConfigError
from infra.index import Claim, DynamoEventIndex, Occurrence
from infra.index_queries import DynamoIndexQueries
from infra.kinesis_boto import BotoKinesis
from infra.leases import DryRunLeaseStore, LeaseStore
from infra.leases_dynamo import DynamoLeaseStore
from infra.metrics import Metrics
from infra.queue import SqsWorkQueue, queue_url
from infra.replay_jobs import DynamoReplayJobs
from infra.replay_log import S3ReplayLog
from infra.replay_queries import DynamoReplayQueries
from infra.resources import REPLAY_VISIBILITY_TIMEOUT_S, Bootstrap, ResourceNames
from infra.schema_registry import (
    ConfluentSchemaSource,
    GlueSchemaSource,
    RegistryCredentials,
    confluent_client,
)
from infra.targets import ReplayTarget, open_target
from pik.config import KitConfig, load_config
from pik.investigate.service import Investigator
from pik.lineage import StoreLineage
from pik.settings import Settings
from pik.supervisor import Backoff, Supervisor
from pik.taps import TapHandle, default_binding
from producers.replay import ReplayService
from schemas.registry import RegistryError, SchemaRegistry
from schemas.remote import RemoteSchemas

TargetFactory = Callable[[str | None], ReplayTarget]
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
    config: KitConfig = field(default_factory=KitConfig)
    # How a binding's registry_url becomes a client (tests give mock:// clients they hold).
    confluent_clients: ConfluentClients = confluent_client
    reader: ArchiveReader = field(init=False)
    _remote: dict[tuple[str, ...], RemoteSchemas[Any]] = field(init=False, default_factory=dict)
    _remote_lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _decoders: dict[TapBinding, RecordDecoder] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.reader = ArchiveReader(self.archive)

    @property
    def dry_run(self) -> bool:
        return self.settings.dry_run

    def bootstrap(self) -> Bootstrap:
        return Bootstrap(self.clients, self.names)

    # -- the tap ----------------------------------------------------------------------------

    def binding_for(self, stream: str) -> TapBinding:
        """The configured binding of a stream (name or ARN), or the default envelope mapping."""
        return self.config.binding_for(stream) or default_binding(stream_name(stream))

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

    def decoder(self, binding: TapBinding, registry: SchemaRegistry | None = None) -> RecordDecoder:
        """How the tap reads the binding's records: the kit's registry (or ``registry``) and,
        with the kit's registry, the binding's remote one. With the kit's registry, one
        decoder per binding for the process (the Lambda tap asks for it on every batch)."""
        if registry is not None:
            return RecordDecoder(binding, registry, max_event_bytes=self.settings.max_event_bytes)
        found = self._decoders.get(binding)
        if found is None:
            found = RecordDecoder(
                binding,
                self.registry,
                max_event_bytes=self.settings.max_event_bytes,
                remote=self.remote_schemas(binding),
            )
            self._decoders[binding] = found
        return found

    def kinesis(self) -> BotoKinesis:
        return BotoKinesis(self.clients.kinesis())

    def tap_worker(
        self,
        binding: TapBinding,
        *,
        start: Any = None,
        registry: SchemaRegistry | None = None,
        options: TapOptions | None = None,
        worker_id: str | None = None,
        fan_out: FanOut | None = None,
    ) -> TapWorker:
        """A tap on one bound stream, wired to the kit's clients, sink, clock and metrics.

        It reads with enhanced fan-out when ``fan_out`` is given or the binding says ``efo =
        true``, and by polling otherwise; ``start`` (a ``StartAt``) overrides the options'."""
        leases: LeaseStore = DynamoLeaseStore(self.clients.dynamodb(), self.names.leases_table)
        if self.sink.dry_run:
            leases = DryRunLeaseStore(leases)
        opts = options or TapOptions()
        if start is not None:
            opts = replace(opts, start=start)
        if fan_out is None and binding.efo:
            fan_out = FanOut(binding.efo_consumer or DEFAULT_CONSUMER_NAME)
        if fan_out is not None:
            opts = replace(opts, fan_out=fan_out)
        decoder = self.decoder(binding, registry)
        return TapWorker(
            binding.stream_name,
            port=self.kinesis(),
            leases=leases,
            sink=self.sink,
            decoder=decoder,
            clock=self.clock,
            metrics=self.metrics,
            options=opts,
            worker_id=worker_id,
        )

    def start_taps(
        self,
        bindings: Sequence[TapBinding] | None = None,
        *,
        options: TapOptions | None = None,
        backoff: Backoff | None = None,
    ) -> TapHandle:
        """One supervised tap per binding (default: every ``[[tap]]`` of the config), each a
        component ``tap:<stream>``, until ``handle.stop()``.

        A tap that fails (a backend outage, its stream deleted) is restarted with capped
        backoff; one with a configuration error is marked failed and left alone; the others
        go on."""
        handle = TapHandle([], Supervisor(backoff=backoff or Backoff()))
        for binding in self.config.taps if bindings is None else bindings:
            worker = self.tap_worker(binding, options=options)

            def run(
                stop: threading.Event, healthy: Callable[[], None], w: TapWorker = worker
            ) -> None:
                w.run(once=False, stop=stop, healthy=healthy)

            handle.workers.append(worker)
            handle.supervisor.add(f"tap:{binding.stream_name}", run)
        handle.supervisor.start()
        return handle

    # -- replay -----------------------------------------------------------------------------

    def replay_targets(self, *, allow_files: bool) -> TargetFactory:
        """Opens targets for replays; queue URLs looked up by name are remembered."""
        urls: dict[str, str] = {}
        lock = threading.Lock()
        kwargs: dict[str, Any] = {
            "sqs_client": self.clients.sqs,
            "kinesis_client": self.clients.kinesis,
            "default_queue": self.names.replay_queue,
            "allow_files": allow_files,
        }

        def open_(spec: str | None) -> ReplayTarget:
            named = spec in (None, "", "default") or (spec or "").startswith("sqs://")
            if not named:
                return open_target(spec, **kwargs)
            key = spec or ""
            with lock:
                url = urls.get(key)
            if url is None:
                url = open_target(spec, **kwargs).description
                with lock:
                    urls[key] = url
            return open_target(url, check=False, **kwargs)

        return open_

    def replay_service(
        self, *, allow_files: bool = True, targets: TargetFactory | None = None, **options: Any
    ) -> ReplayService:
        """The replay use case (``targets`` replaces the target factory, e.g. with one that
        injects faults; ``options`` go to ``ReplayService``)."""
        ddb = self.clients.dynamodb()
        return ReplayService(
            index=self.index,
            queries=DynamoReplayQueries(ddb, self.names.events_table),
            jobs=DynamoReplayJobs(ddb, self.names.replay_jobs_table),
            targets=targets or self.replay_targets(allow_files=allow_files),
            archive=self.archive,
            clock=self.clock,
            metrics=self.metrics,
            dry_run=self.dry_run,
            log=S3ReplayLog(self.clients.s3(), self.names.bucket),
            **options,
        )

    def replay_queue(
        self, url: str | None = None, *, visibility_timeout_s: int = REPLAY_VISIBILITY_TIMEOUT_S
    ) -> SqsWorkQueue:
        """The replay queue (or ``url``), received with ``visibility_timeout_s``: how long a
        batch a processor took stays hidden from the others, and how late it comes back if
        that one dies."""
        sqs = self.clients.sqs()
        if url is None:
            url = queue_url(sqs, self.names.replay_queue)
        return SqsWorkQueue(sqs, url, visibility_timeout_s)

    # -- processor, investigation, lineage --------------------------------------------------

    def aggregates(self) -> DynamoAggregates:
        return DynamoAggregates(self.clients.dynamodb(), self.names.aggregates_table, self.archive)

    def processor(self) -> Processor:
        """The opt-in processor with the config's ``[[aggregate]]`` definitions."""
        return Processor(
            self.index,
            self.archive,
            self.aggregates(),
            self.clock,
            self.metrics,
            definitions=self.config.definitions,
            dry_run=self.dry_run,
        )

    def investigator(self) -> Investigator:
        """The investigation use cases on the kit's events table and clock."""
        queries = DynamoIndexQueries(self.clients.dynamodb(), self.names.events_table)
        return Investigator(queries, self.clock)

    def lineage(self) -> StoreLineage:
        """The lineage of the kit's own stores: its replay jobs table, the sent logs in its
        archive bucket, and its aggregates table."""
        ddb = self.clients.dynamodb()
        return StoreLineage(
            DynamoReplayJobs(ddb, self.names.replay_jobs_table),
            S3ReplayLog(self.clients.s3(), self.names.bucket),
            self.aggregates(),
        )


def registry_credentials(settings: Settings) -> RegistryCredentials:
    """A Confluent-compatible registry's credentials, from the settings (the environment)."""
    s = settings
    return RegistryCredentials(
        user=s.registry_user,
        password=s.registry_password.get_secret_value() if s.registry_password else None,
        token=s.registry_token.get_secret_value() if s.registry_token else None,
        logical_cluster=s.registry_logical_cluster,
    )


def _recover(
    archive: S3RawArchive,
) -> Callable[[str, str], tuple[list[Claim], list[Occurrence]] | None]:
    """How the index reads back a pending archive file's claims and occurrences (files of this
    kit's bucket)."""

    def recover(bucket: str, key: str) -> tuple[list[Claim], list[Occurrence]] | None:
        if bucket != archive.bucket:
            return None
        return file_entries(bucket, key, archive.get_file(key))

    return recover


def build_kit(
    settings: Settings,
    clock: Clock | None = None,
    *,
    clients: AwsClients | None = None,
    config: KitConfig | None = None,
) -> Kit:
    """The kit of ``settings``; the config file is read here (or ``config`` given, already
    read). ``clients`` replaces the clients made from ``settings.aws()`` (other retries,
    hooks). A bad config file is a ``ConfigError`` naming the key."""
    config = config if config is not None else load_config(settings.config)
    clients = clients or AwsClients(settings.aws())
    names = settings.names()
    archive = S3RawArchive(clients.s3(), names.bucket)
    index = DynamoEventIndex(clients.dynamodb(), names.events_table, recover=_recover(archive))
    metrics = Metrics()
    clock = clock or SystemClock()
    try:
        registry = config.schemas.load_registry()
    except RegistryError as exc:
        raise ConfigError(f"schema registry: {exc}") from exc
    validator = config.schemas.validator(registry)
    sink = IngestSink(archive, index, clock, metrics, dry_run=settings.dry_run, validator=validator)
    return Kit(settings, clients, names, archive, index, metrics, clock, sink, registry, config)
