"""Tap bindings (contract, ARCHITECTURE.md): how to read one stream's records without changing
its producers.

A binding names the stream, the record format and where each envelope field comes from::

    [[tap]]
    stream = "orders"                 # name or ARN
    source = "orders-service"         # a constant, or "$.field"
    format = "json"                   # json | avro-confluent | avro-single-object | avro-glue | raw
    registry_url = "https://sr:8081"  # optional, avro-confluent: resolve unknown schema ids there
    event_type = "$.type"             # "$.a.b" reads a field; anything else is a constant
    entity_id = "$.customer_id"       # default: the record's partition key
    event_time = "$.ts"               # default: the record's ApproximateArrivalTimestamp
    idempotency_key = "$.order_id"    # default: none
    efo = true                        # optional: read with enhanced fan-out (default: polling)
    efo_consumer = "pik-tap"          # optional: the stream consumer's name (default pik-tap)

Defaults when a field is not mapped:

* ``entity_id`` → the record's partition key; ``event_time`` → its arrival timestamp;
  ``idempotency_key`` → none.
* ``source`` / ``event_type``: for Avro, the registry entry of the record's writer schema
  (``<registry>/<source>/<event_type>/`` of ``[schemas] registry``); for JSON, the record's own ``$.source`` /
  ``$.event_type``; ``raw`` records have no fields, so both must be constants.
* ``registry_url`` (``avro-confluent`` only): schema ids the registry folder does not hold are
  looked up in that Confluent-compatible Schema Registry (``infra/schema_registry.py``).
  Credentials come from the environment only (``PIK_REGISTRY_USER`` / ``PIK_REGISTRY_PASSWORD``
  or ``PIK_REGISTRY_TOKEN``); credential keys in the binding, or in the URL, are refused.
* ``avro-glue``: AWS Glue Schema Registry framing (``03``, compression ``00`` or ``05`` = zlib,
  the 16-byte schema version UUID); schemas are looked up with ``glue:GetSchemaVersion`` (the
  kit's AWS clients and credentials) and kept. Unmapped ``source`` / ``event_type`` default to
  the Glue registry and schema name.
* A ``json`` binding that maps none of the five fields reads records as envelopes (the HTTP
  body shape), still with the partition key and arrival time as defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from infra.errors import ConfigError
from infra.schema_registry import check_registry_url

PATH_PREFIX = "$."
ENVELOPE_FIELDS = ("source", "event_type", "entity_id", "event_time", "idempotency_key")


class Format(StrEnum):
    JSON = "json"
    AVRO_CONFLUENT = "avro-confluent"
    AVRO_SINGLE_OBJECT = "avro-single-object"
    AVRO_GLUE = "avro-glue"  # AWS Glue Schema Registry framing, schemas by version UUID
    RAW = "raw"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """Where one envelope field comes from: a path into the record, or a constant."""

    path: tuple[str, ...] | None = None
    constant: str | None = None

    @classmethod
    def parse(cls, text: str) -> FieldSpec:
        if text.startswith(PATH_PREFIX):
            parts = tuple(text[len(PATH_PREFIX) :].split("."))
            if not all(parts):
                raise ValueError(f"field path {text!r} has an empty segment")
            return cls(path=parts)
        if not text:
            raise ValueError("a constant must not be empty")
        return cls(constant=text)

    def __str__(self) -> str:
        return PATH_PREFIX + ".".join(self.path) if self.path is not None else str(self.constant)


@dataclass(frozen=True, slots=True)
class TapBinding:
    stream: str
    format: Format = Format.JSON
    source: FieldSpec | None = None
    event_type: FieldSpec | None = None
    entity_id: FieldSpec | None = None
    event_time: FieldSpec | None = None
    idempotency_key: FieldSpec | None = None
    efo: bool = False  # how to read, not what: enhanced fan-out instead of GetRecords polling
    efo_consumer: str | None = None  # None: the default consumer name
    registry_url: str | None = None  # avro-confluent: a Confluent-compatible Schema Registry

    @property
    def stream_name(self) -> str:
        """The stream's name, also when the binding gives its ARN."""
        return stream_name(self.stream)

    @property
    def envelope_mode(self) -> bool:
        """JSON records in the envelope's own shape: no field is mapped."""
        return self.format is Format.JSON and all(
            getattr(self, name) is None for name in ENVELOPE_FIELDS
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"stream": self.stream, "format": self.format.value}
        for name in ENVELOPE_FIELDS:
            spec = getattr(self, name)
            if spec is not None:
                out[name] = str(spec)
        if self.efo:
            out["efo"] = True
        if self.efo_consumer is not None:
            out["efo_consumer"] = self.efo_consumer
        if self.registry_url is not None:
            out["registry_url"] = self.registry_url
        return out


READ_KEYS = ("efo", "efo_consumer")
BINDING_KEYS = ("stream", "format", "registry_url", *ENVELOPE_FIELDS, *READ_KEYS)
# Keys someone may try for registry credentials: refused with where they belong instead.
CREDENTIAL_KEYS = (
    "registry_user",
    "registry_password",
    "registry_token",
    "registry_auth",
    "basic.auth.user.info",
    "bearer.auth.token",
    "user",
    "password",
    "token",
)
CREDENTIALS_FROM_ENV = (
    "schema registry credentials come from the environment only: PIK_REGISTRY_USER and "
    "PIK_REGISTRY_PASSWORD (basic auth) or PIK_REGISTRY_TOKEN (bearer)"
)


def stream_name(name_or_arn: str) -> str:
    """``arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`` → ``NAME``; a name stays as it is."""
    if name_or_arn.startswith("arn:"):
        _, _, tail = name_or_arn.partition(":stream/")
        if not tail:
            raise ConfigError(f"{name_or_arn!r} is not a Kinesis stream ARN")
        return tail
    return name_or_arn


def binding_from_table(table: Mapping[str, Any], where: str = "[[tap]]") -> TapBinding:
    """A ``[[tap]]`` table → binding; unknown keys and bad values fail with what was wrong."""
    secrets = sorted(set(table) & set(CREDENTIAL_KEYS))
    if secrets:
        raise ConfigError(f"{where}: {', '.join(secrets)}: {CREDENTIALS_FROM_ENV}")
    unknown = sorted(set(table) - set(BINDING_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(BINDING_KEYS)}"
        )
    stream = table.get("stream")
    if not isinstance(stream, str) or not stream:
        raise ConfigError(f"{where}: `stream` (a stream name or ARN) is required")
    try:
        fmt = Format(table.get("format", Format.JSON.value))
    except ValueError:
        known = " | ".join(f.value for f in Format)
        raise ConfigError(
            f"{where}: format {table.get('format')!r} is not one of {known}"
        ) from None
    specs: dict[str, FieldSpec] = {}
    for name in ENVELOPE_FIELDS:
        if name not in table:
            continue
        value = table[name]
        if not isinstance(value, str):
            raise ConfigError(f'{where}: `{name}` must be a string (a constant or "$.path")')
        try:
            specs[name] = FieldSpec.parse(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: `{name}`: {exc}") from None
    if fmt is Format.RAW:
        for name in ("source", "event_type"):
            spec = specs.get(name)
            if spec is None or spec.constant is None:
                raise ConfigError(f"{where}: a raw binding needs a constant `{name}`")
        paths = [name for name, spec in specs.items() if spec.path is not None]
        if paths:
            raise ConfigError(f"{where}: raw records have no fields to read: {', '.join(paths)}")
    efo = table.get("efo", False)
    if not isinstance(efo, bool):
        raise ConfigError(f"{where}: `efo` must be true or false")
    consumer = table.get("efo_consumer")
    if consumer is not None and (not isinstance(consumer, str) or not consumer):
        raise ConfigError(f"{where}: `efo_consumer` must be a stream consumer name")
    registry_url = table.get("registry_url")
    if registry_url is not None:
        if not isinstance(registry_url, str) or not registry_url:
            raise ConfigError(f"{where}: `registry_url` must be a URL (text)")
        if fmt is not Format.AVRO_CONFLUENT:
            raise ConfigError(f'{where}: `registry_url` is for format = "avro-confluent" only')
        check_registry_url(registry_url, where)
    stream_name(stream)  # an ARN must name a stream
    return TapBinding(
        stream=stream,
        format=fmt,
        efo=efo,
        efo_consumer=consumer,
        registry_url=registry_url,
        **specs,
    )
