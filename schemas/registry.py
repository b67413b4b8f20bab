"""The schema registry (lookup part): payload schemas per source and event type, by version.

Layout of a registry folder (``[schemas] registry``; the demo's samples are in
``pik/demo_registry/``)::

    registry/<source>/<event_type>/v<N>.avsc     one Avro schema per version
    registry/ids.json                            {"<source>/<event_type>/v<N>": <schema id>}

Each schema is known by

* its **fingerprint**: CRC-64-AVRO of its parsing canonical form (``schema_fingerprint``), the
  8 bytes that follow ``C3 01`` in Avro single-object encoding (16 hex digits, little-endian);
* optionally a numeric **schema id** for the Confluent wire format (``00`` + 4-byte big-endian
  id). Ids are not derived from the schema: a Confluent registry assigns them, so ``ids.json``
  records the ids the producers' registry uses. A schema without an id is still found by
  fingerprint; an id is never given to two schemas.

Lookups never raise for an unknown schema: they return ``None`` and the caller turns that into a
rejection with its raw bytes kept.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro

from schemas.codec import schema_fingerprint
from schemas.errors import ConfigError

IDS_FILE = "ids.json"
SCHEMA_SUFFIX = ".avsc"
MAX_SCHEMA_ID = 2**32 - 1

_VERSION = re.compile(r"^v([1-9][0-9]*)\.avsc$")


class RegistryError(ConfigError, ValueError):
    """The registry folder is malformed (bad schema, clashing ids): an operator must fix it."""


@dataclass(frozen=True, slots=True)
class SchemaEntry:
    source: str
    event_type: str
    version: int
    schema: dict[str, Any] | list[Any] | str  # the schema as written
    parsed: Any  # fastavro's parsed form, ready for schemaless_reader
    fingerprint: str  # 16 hex digits, the single-object header bytes
    schema_id: int | None = None
    ref: str | None = None  # a remote registry's name for it (schemas/remote.py); None: folder

    @property
    def subject(self) -> str:
        return f"{self.source}/{self.event_type}/v{self.version}"

    @property
    def name(self) -> str:
        """How rejections and archives name it: the remote registry's reference, else the
        folder's ``<source>/<event_type>/v<N>``."""
        return self.ref if self.ref is not None else self.subject

    @property
    def fingerprint_bytes(self) -> bytes:
        return bytes.fromhex(self.fingerprint)


class SchemaRegistry:
    """Schemas by fingerprint, by Confluent id, and by (source, event type, version)."""

    def __init__(self) -> None:
        self._by_subject: dict[tuple[str, str, int], SchemaEntry] = {}
        self._by_fingerprint: dict[bytes, SchemaEntry] = {}
        self._by_id: dict[int, SchemaEntry] = {}

    # -- building ----------------------------------------------------------------------------
    def register(
        self,
        source: str,
        event_type: str,
        version: int,
        schema: dict[str, Any] | list[Any] | str,
        *,
        schema_id: int | None = None,
    ) -> SchemaEntry:
        try:
            parsed = fastavro.parse_schema(schema)
            fingerprint = schema_fingerprint(schema)
        except (fastavro.schema.SchemaParseException, ValueError, TypeError, KeyError) as exc:
            raise RegistryError(f"{source}/{event_type}/v{version}: bad schema: {exc}") from exc
        entry = SchemaEntry(source, event_type, version, schema, parsed, fingerprint, schema_id)
        if schema_id is not None:
            if not 0 <= schema_id <= MAX_SCHEMA_ID:
                raise RegistryError(f"{entry.subject}: schema id {schema_id} out of range")
            taken = self._by_id.get(schema_id)
            if taken is not None and taken.fingerprint != fingerprint:
                raise RegistryError(
                    f"schema id {schema_id} given to both {taken.subject} and {entry.subject}"
                )
            self._by_id[schema_id] = entry
        self._by_subject[(source, event_type, version)] = entry
        # The same schema text under two subjects: the first keeps the fingerprint.
        self._by_fingerprint.setdefault(entry.fingerprint_bytes, entry)
        return entry

    @classmethod
    def load(cls, folder: Path | None = None) -> SchemaRegistry:
        """Every ``<source>/<event_type>/v<N>.avsc`` under ``folder``; none for ``None``: no
        samples are loaded unless asked for, so a user's ids 1, 2, ... are theirs."""
        registry = cls()
        if folder is None:
            return registry
        root: Any = folder
        if not root.is_dir():
            return registry
        ids = _read_ids(root)
        for source_dir in sorted(root.iterdir(), key=lambda p: p.name):
            if not source_dir.is_dir():
                continue
            for type_dir in sorted(source_dir.iterdir(), key=lambda p: p.name):
                if not type_dir.is_dir():
                    continue
                for file in sorted(type_dir.iterdir(), key=lambda p: p.name):
                    found = _VERSION.match(file.name)
                    if found is None:
                        continue
                    version = int(found.group(1))
                    subject = f"{source_dir.name}/{type_dir.name}/v{version}"
                    try:
                        schema = json.loads(file.read_text("utf-8"))
                    except ValueError as exc:
                        raise RegistryError(f"{subject}: not JSON: {exc}") from exc
                    registry.register(
                        source_dir.name,
                        type_dir.name,
                        version,
                        schema,
                        schema_id=ids.pop(subject, None),
                    )
        if ids:
            raise RegistryError(f"{IDS_FILE} names schemas that do not exist: {sorted(ids)}")
        return registry

    # -- lookups -----------------------------------------------------------------------------
    def by_fingerprint(self, fingerprint: bytes) -> SchemaEntry | None:
        return self._by_fingerprint.get(fingerprint)

    def by_id(self, schema_id: int) -> SchemaEntry | None:
        return self._by_id.get(schema_id)

    def get(self, source: str, event_type: str, version: int | None = None) -> SchemaEntry | None:
        """One version, or the latest when ``version`` is None."""
        if version is not None:
            return self._by_subject.get((source, event_type, version))
        versions = [v for (s, t, v) in self._by_subject if (s, t) == (source, event_type)]
        return self._by_subject[(source, event_type, max(versions))] if versions else None

    def __iter__(self) -> Iterator[SchemaEntry]:
        return iter(sorted(self._by_subject.values(), key=lambda e: e.subject))

    def __len__(self) -> int:
        return len(self._by_subject)


def encode_confluent(entry: SchemaEntry, datum: dict[str, Any]) -> bytes:
    """Confluent wire format: ``00``, the 4-byte big-endian schema id, the Avro body."""
    if entry.schema_id is None:
        raise RegistryError(f"{entry.subject} has no schema id (add it to {IDS_FILE})")
    return b"\x00" + entry.schema_id.to_bytes(4, "big") + _body(entry, datum)


def encode_single_object(entry: SchemaEntry, datum: dict[str, Any]) -> bytes:
    """Avro single-object encoding: ``C3 01``, the 8-byte fingerprint, the Avro body."""
    return b"\xc3\x01" + entry.fingerprint_bytes + _body(entry, datum)


def _body(entry: SchemaEntry, datum: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, entry.parsed, datum)
    return buffer.getvalue()


def _read_ids(root: Any) -> dict[str, int]:
    file = root / IDS_FILE
    if not file.is_file():
        return {}
    try:
        doc = json.loads(file.read_text("utf-8"))
    except ValueError as exc:
        raise RegistryError(f"{IDS_FILE}: not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise RegistryError(f"{IDS_FILE}: expected an object of subject → id")
    ids: dict[str, int] = {}
    for subject, value in doc.items():
        if subject.startswith("_"):  # comments such as "_doc"
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise RegistryError(f"{IDS_FILE}: id of {subject} is not an integer")
        ids[subject] = value
    return ids
