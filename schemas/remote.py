"""Schemas the registry folder does not hold, looked up in a remote registry and kept.

A tap binding may name a remote registry (a Confluent-compatible Schema Registry by
``registry_url``, or AWS Glue Schema Registry by ``format = "avro-glue"``). Its records name
their writer schema by a key (a Confluent schema id, a Glue schema version UUID); a key met for
the first time is looked up through a ``SchemaSource`` (the port; the adapters are in
``infra/schema_registry.py``) and its entry kept for the life of the process: schema ids and
version UUIDs never change their schema, so the cache needs no expiry, and a producer's new
version is a new key, looked up when its first record arrives (no restart).

A key the registry does not know is remembered as unknown for ``UNKNOWN_RECHECK_S`` (its
records are rejected as ``unknown_schema`` meanwhile) so that a stream full of one bad id costs
one lookup a minute, not one per record. A source that cannot answer (down, refusing the
credentials) raises; the caller decides what that means for the record (the tap backs off).

Cache hits cost one dict lookup: ``RemoteSchemas.get`` is ``dict.get`` until a miss.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import fastavro

from schemas.codec import schema_fingerprint
from schemas.registry import RegistryError, SchemaEntry

UNKNOWN_RECHECK_S = 60.0

K = TypeVar("K", bound=Hashable)
K_contra = TypeVar("K_contra", contravariant=True)


@dataclass(frozen=True, slots=True)
class RemoteSchema:
    """One schema as a remote registry answered for a key."""

    definition: str  # the schema text as the registry holds it
    ref: str  # how archives and rejections name it, e.g. "glue:orders/order_placed/v3"
    source: str | None = None  # what an unmapped `source` defaults to (None: the namespace)
    event_type: str | None = None  # what an unmapped `event_type` defaults to (None: the name)
    version: int = 0  # the registry's version number, 0 when the lookup does not say
    data_format: str = "AVRO"


class SchemaSource(Protocol[K_contra]):
    """A remote registry, by the key its framing carries. ``None``: the registry answered that
    it does not know the key. Raises (a ``BackendError``) when it cannot answer."""

    def lookup(self, key: K_contra) -> RemoteSchema | None: ...


class RemoteSchemas(Generic[K]):
    """Entries by key: those given at the start (the registry folder's), then whatever the
    source answers, kept. Thread-safe: readers of several shards share one."""

    def __init__(
        self,
        source: SchemaSource[K],
        known: Iterable[tuple[K, SchemaEntry]] = (),
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._entries: dict[K, SchemaEntry] = dict(known)
        self._unknown: dict[K, tuple[float, str]] = {}  # key → (when to ask again, why)
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self.lookups = 0  # remote calls made (for tests and the summary)
        # The hot path's own lookup: ``dict.get`` of the kept entries, bound once; ``None``
        # (a miss) is then asked of ``get``.
        self.cached: Callable[[K], SchemaEntry | None] = self._entries.get

    def get(self, key: K) -> SchemaEntry | None:
        """The entry of ``key``, looked up on a miss; ``None`` when the registry lacks it (or
        holds no Avro schema under it: ``why`` says which)."""
        entry = self._entries.get(key)
        return entry if entry is not None else self._miss(key)

    def why(self, key: K) -> str:
        """Why ``get(key)`` found nothing, in the registry's words."""
        unknown = self._unknown.get(key)
        return unknown[1] if unknown is not None else "not found"

    def _miss(self, key: K) -> SchemaEntry | None:
        with self._lock:
            entry = self._entries.get(key)  # another reader may have just looked it up
            if entry is not None:
                return entry
            unknown = self._unknown.get(key)
            if unknown is not None and self._monotonic() < unknown[0]:
                return None
            self.lookups += 1
            found = self._source.lookup(key)  # raises when the registry cannot answer
            problem = "the registry does not know it"
            if found is not None:
                try:
                    entry = remote_entry(found)
                except RegistryError as exc:
                    problem = str(exc)
                else:
                    self._unknown.pop(key, None)
                    self._entries[key] = entry
                    return entry
            self._unknown[key] = (self._monotonic() + UNKNOWN_RECHECK_S, problem)
            return None


def remote_entry(found: RemoteSchema, *, schema_id: int | None = None) -> SchemaEntry:
    """A remote schema as a registry entry (parsed once, fingerprinted)."""
    if found.data_format.upper() != "AVRO":
        raise RegistryError(f"{found.ref} is a {found.data_format} schema, not Avro")
    try:
        schema: Any = json.loads(found.definition)
        parsed = fastavro.parse_schema(schema)
        fingerprint = schema_fingerprint(schema)
    except (ValueError, TypeError, KeyError, fastavro.schema.SchemaParseException) as exc:
        raise RegistryError(f"{found.ref}: bad schema: {exc}") from exc
    namespace, _, name = _full_name(schema).rpartition(".")
    return SchemaEntry(
        source=found.source or namespace,
        event_type=found.event_type or name,
        version=found.version,
        schema=schema,
        parsed=parsed,
        fingerprint=fingerprint,
        schema_id=schema_id,
        ref=found.ref,
    )


def _full_name(schema: Any) -> str:
    if isinstance(schema, dict) and isinstance(schema.get("name"), str):
        name: str = schema["name"]
        namespace = schema.get("namespace")
        if "." not in name and isinstance(namespace, str) and namespace:
            return f"{namespace}.{name}"
        return name
    return ""
