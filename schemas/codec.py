"""Avro codec for the archive: object container files of many ``ArchiveRecord`` records.

The record schema (``archive_record.avsc``) is a contract; ``ARCHIVE_SCHEMA_FINGERPRINT`` names
the version a file was written with.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator
from functools import cache
from importlib import resources
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form
from isal import isal_zlib

from schemas.archive_encoder import RecordEncoder, Unplain, long_bytes, matches
from schemas.frozen import maker
from schemas.records import ArchiveRecord, Provenance

ARCHIVE_CODEC = "deflate"
# ISA-L's deflate at its default level on blocks of ~1 MiB: files about the size fastavro's
# defaults made (zlib level 6 on 16 kB blocks), for an eighth of the CPU (bench/tap.py). Any
# inflater reads them: the format is deflate's, only the encoder's search differs.
ARCHIVE_COMPRESSION_LEVEL = isal_zlib.ISAL_DEFAULT_COMPRESSION
ARCHIVE_BLOCK_BYTES = 1 << 20  # uncompressed record bytes per block (a reader holds one block)
SYNC_BYTES = 16


# The same as calling the classes, about twice as fast: for the hot paths (schemas/frozen.py).
# Positional constructors for the hot paths (the tap's decoder, the ingest sink). They name the
# fields their callers pass by position, checked against the classes at import: a field
# inserted or moved fails every test instead of shifting values (schemas/frozen.py).
new_provenance = maker(
    Provenance,
    positional=(
        "occurrence_id",
        "origin",
        "request_id",
        "stream",
        "shard_id",
        "sequence_number",
        "sub_sequence_number",
        "partition_key",
        "arrival_time",
    ),
)
new_archive_record = maker(
    ArchiveRecord,
    positional=(
        "event_id",
        "status",
        "ingest_time",
        "raw",
        "provenance",
        "reason",
        "detail",
        "source",
        "event_type",
        "entity_id",
        "event_time",
        "idempotency_key",
        "lag_ms",
        "payload",
        "schema_fingerprint",
        "schema_ref",
    ),
)


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
