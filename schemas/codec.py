"""Avro codec for the archive: object container files of many ``ArchiveRecord`` records.

The record schema (``archive_record.avsc``) is a contract; ``ARCHIVE_SCHEMA_FINGERPRINT`` names
the version a file was written with.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form
from isal import isal_zlib

from schemas.archive_encoder import RecordEncoder, Unplain, long_bytes, matches
from schemas.frozen import maker

ARCHIVE_CODEC = "deflate"
# ISA-L's deflate at its default level on blocks of ~1 MiB: files about the size fastavro's
# defaults made (zlib level 6 on 16 kB blocks), for an eighth of the CPU (bench/tap.py). Any
# inflater reads them: the format is deflate's, only the encoder's search differs.
ARCHIVE_COMPRESSION_LEVEL = isal_zlib.ISAL_DEFAULT_COMPRESSION
ARCHIVE_BLOCK_BYTES = 1 << 20  # uncompressed record bytes per block (a reader holds one block)
SYNC_BYTES = 16


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where one delivery of a record came from."""

    occurrence_id: str
    origin: str
    request_id: str | None = None
    stream: str | None = None
    shard_id: str | None = None
    sequence_number: str | None = None
    sub_sequence_number: int | None = None
    partition_key: str | None = None
    arrival_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class ArchiveRecord:
    event_id: str
    status: str
    ingest_time: datetime
    raw: bytes
    provenance: Provenance
    reason: str | None = None
    detail: str | None = None
    source: str | None = None
    event_type: str | None = None
    entity_id: str | None = None
    event_time: datetime | None = None
    idempotency_key: str | None = None
    lag_ms: int | None = None
    payload: str | None = None
    schema_fingerprint: str | None = None

    def to_avro(self) -> dict[str, Any]:
        # Spelled out: this runs once per archived record (dataclasses.asdict deep-copies).
        p = self.provenance
        return {
            "event_id": self.event_id,
            "status": self.status,
            "reason": self.reason,
            "detail": self.detail,
            "source": self.source,
            "event_type": self.event_type,
            "entity_id": self.entity_id,
            "event_time": self.event_time,
            "idempotency_key": self.idempotency_key,
            "ingest_time": self.ingest_time,
            "lag_ms": self.lag_ms,
            "payload": self.payload,
            "raw": self.raw,
            "schema_fingerprint": self.schema_fingerprint,
            "occurrence_id": p.occurrence_id,
            "origin": p.origin,
            "request_id": p.request_id,
            "stream": p.stream,
            "shard_id": p.shard_id,
            "sequence_number": p.sequence_number,
            "sub_sequence_number": p.sub_sequence_number,
            "partition_key": p.partition_key,
            "arrival_time": p.arrival_time,
        }

    @classmethod
    def from_avro(cls, row: dict[str, Any]) -> ArchiveRecord:
        prov: dict[str, Any] = {name: row.get(name) for name in Provenance.__slots__}
        fields: dict[str, Any] = {n: row.get(n) for n in cls.__slots__ if n != "provenance"}
        return cls(provenance=Provenance(**prov), **fields)

    def envelope(self) -> dict[str, Any] | None:
        """The event as the producer meant it (None for a rejected record)."""
        if self.status == "REJECTED" or self.payload is None or self.event_time is None:
            return None
        return {
            "source": self.source,
            "event_type": self.event_type,
            "entity_id": self.entity_id,
            "event_time": self.event_time.isoformat().replace("+00:00", "Z"),
            "payload": json.loads(self.payload),
            "idempotency_key": self.idempotency_key,
        }


# The same as calling the classes, about twice as fast: for the hot paths (schemas/frozen.py).
new_provenance = maker(Provenance)
new_archive_record = maker(ArchiveRecord)


def schema_fingerprint(schema: dict[str, Any] | str | list[Any]) -> str:
    """CRC-64-AVRO (Rabin) fingerprint of a schema's parsing canonical form, as 16 hex digits."""
    parsed = fastavro.parse_schema(schema, _write_hint=False)
    return str(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


@cache
def archive_schema_json() -> dict[str, Any]:
    text = resources.files("schemas").joinpath("archive_record.avsc").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _parsed_archive_schema() -> Any:
    return fastavro.parse_schema(archive_schema_json())


@cache
def archive_fingerprint() -> str:
    return schema_fingerprint(archive_schema_json())


def encode_archive(records: Iterable[ArchiveRecord]) -> bytes:
    """One Avro object container file holding ``records`` in order.

    The header (schema, codec, metadata, sync marker) is fastavro's own; the records are
    encoded by ``archive_encoder`` (fastavro for any record it does not take) and written as
    blocks of about ``ARCHIVE_BLOCK_BYTES``, each raw-deflated and closed by the sync marker,
    as the Avro specification frames them.
    """
    schema = _parsed_archive_schema()
    if not _encoder_fits():  # a schema this encoder does not know: fastavro does it all
        buffer = io.BytesIO()
        rows = (record.to_avro() for record in records)
        metadata = {"pik.archive_fingerprint": archive_fingerprint()}
        fastavro.writer(buffer, schema, rows, codec=ARCHIVE_CODEC, metadata=metadata)
        return buffer.getvalue()
    sync = os.urandom(SYNC_BYTES)
    out = [_header_before_sync(), sync]
    encoder = RecordEncoder()
    block: list[bytes] = []
    size = 0
    for record in records:
        try:
            data = encoder.encode(record)
        except Unplain:
            fallback = io.BytesIO()
            fastavro.schemaless_writer(fallback, schema, record.to_avro())
            data = fallback.getvalue()
        block.append(data)
        size += len(data)
        if size >= ARCHIVE_BLOCK_BYTES:
            out.append(_deflated_block(block, sync))
            block, size = [], 0
    if block:
        out.append(_deflated_block(block, sync))
    return b"".join(out)


def _deflated_block(records: list[bytes], sync: bytes) -> bytes:
    """A container block: record count, byte count, the records raw-deflated, sync marker."""
    data = isal_zlib.compress(b"".join(records), ARCHIVE_COMPRESSION_LEVEL, -isal_zlib.MAX_WBITS)
    return long_bytes(len(records)) + long_bytes(len(data)) + data + sync


@cache
def _header_before_sync() -> bytes:
    """fastavro's file header (magic, schema, codec, our metadata) less its closing sync marker,
    which the Avro specification puts last and which each file draws anew."""
    header = io.BytesIO()
    metadata = {"pik.archive_fingerprint": archive_fingerprint()}
    marker = bytes(SYNC_BYTES)
    schema = _parsed_archive_schema()
    fastavro.writer(header, schema, [], codec=ARCHIVE_CODEC, metadata=metadata, sync_marker=marker)
    return header.getvalue().removesuffix(marker)


@cache
def _encoder_fits() -> bool:
    return matches(archive_schema_json())


def decode_archive(data: bytes) -> Iterator[ArchiveRecord]:
    """Records of a container file, each with the writer's schema resolved to ours."""
    for row in fastavro.reader(io.BytesIO(data), reader_schema=_parsed_archive_schema()):
        assert isinstance(row, dict)
        yield ArchiveRecord.from_avro(row)
