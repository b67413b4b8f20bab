"""schemas/archive_encoder.py: the hand-written encoding is fastavro's, byte for byte, and the
archive files it frames read back with a standard reader to the very same records."""

from __future__ import annotations

import io
import zlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.archive_encoder import LAYOUT, RecordEncoder, Unplain, long_bytes, matches
from schemas.codec import (
    ARCHIVE_CODEC,
    ArchiveRecord,
    Provenance,
    archive_fingerprint,
    archive_schema_json,
    decode_archive,
    encode_archive,
)

SCHEMA = fastavro.parse_schema(archive_schema_json())
LONG = st.integers(min_value=-(2**63), max_value=2**63 - 1)
SMALL = st.integers(-2, 9000)  # around the encoder's table of small longs (8,192 entries)
TEXT = st.text()  # any code point but lone surrogates (which UTF-8 cannot carry)
SHORT = st.sampled_from(["", "a", "ACCEPTED", "demo", "é", "user_123", "x" * 70, "𝄞"])
some_text = st.one_of(SHORT, TEXT)
option = st.one_of(st.none(), some_text)
OFFSETS = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))])
# Times fastavro can write: microseconds since the epoch within a long, after any offset.
TIMES = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=OFFSETS
)
ANY_STAMP = st.one_of(TIMES, LONG.filter(lambda n: abs(n) < 2**62))
# What a reader can turn back into a datetime (years 1 to 9999).
READABLE_STAMP = st.one_of(TIMES, st.integers(-62_000_000_000_000_000, 253_000_000_000_000_000))


@st.composite
def records(draw: st.DrawFn, stamp: st.SearchStrategy[Any] = ANY_STAMP) -> ArchiveRecord:
    provenance = Provenance(
        occurrence_id=draw(some_text),
        origin=draw(st.sampled_from(["http", "kinesis", "file"])),
        request_id=draw(option),
        stream=draw(option),
        shard_id=draw(option),
        sequence_number=draw(option),
        sub_sequence_number=draw(st.one_of(st.none(), LONG, SMALL)),
        partition_key=draw(option),
        arrival_time=draw(st.one_of(st.none(), stamp)),
    )
    return ArchiveRecord(
        event_id=draw(some_text),
        status=draw(st.sampled_from(["ACCEPTED", "DUPLICATE", "REJECTED"])),
        ingest_time=draw(stamp),
        raw=draw(st.binary(max_size=300) | st.binary(min_size=8190, max_size=8200)),
        provenance=provenance,
        reason=draw(option),
        detail=draw(option),
        source=draw(option),
        event_type=draw(option),
        entity_id=draw(option),
        event_time=draw(st.one_of(st.none(), stamp)),
        idempotency_key=draw(option),
        lag_ms=draw(st.one_of(st.none(), LONG, SMALL)),
        payload=draw(st.one_of(st.none(), TEXT, st.text(min_size=9000, max_size=9000))),
        schema_fingerprint=draw(option),
        schema_ref=draw(option),
    )


def fastavro_bytes(record: ArchiveRecord) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, SCHEMA, record.to_avro())
    return buffer.getvalue()


def test_the_encoder_knows_the_archive_schema() -> None:
    """A change to archive_record.avsc needs the encoder changed too (until then the codec
    keeps to fastavro, correct but slow): this test says so."""
    assert matches(archive_schema_json())
    assert [name for name, _ in LAYOUT] == [f["name"] for f in archive_schema_json()["fields"]]


def test_a_schema_it_does_not_know_is_not_matched() -> None:
    schema = archive_schema_json()
    assert not matches({**schema, "fields": [*schema["fields"], {"name": "x", "type": "int"}]})
    changed = [dict(f) for f in schema["fields"]]
    changed[0]["type"] = "bytes"
    assert not matches({**schema, "fields": changed})


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), min_size=1, max_size=6))
def test_encoding_equals_fastavro_schemaless_writer(batch: list[ArchiveRecord]) -> None:
    encoder = RecordEncoder()  # one per file: its memo must not leak between values
    for record in [*batch, *batch]:  # the second time round, from the memo
        assert encoder.encode(record) == fastavro_bytes(record)


@pytest.mark.parametrize("length", [8_191, 8_192, 70_000])
def test_texts_past_the_length_table_are_encoded_here_too(length: int) -> None:
    """Lengths from 8,192 bytes on are worked out, not looked up: such a record is still the
    encoder's (no Unplain), in every string field."""
    text = "x" * length
    record = ArchiveRecord(
        event_id=text,
        status="ACCEPTED",
        ingest_time=datetime(2025, 12, 29, tzinfo=UTC),
        raw=text.encode(),
        provenance=Provenance(
            occurrence_id=text, origin="kinesis", sequence_number=text, sub_sequence_number=9_000
        ),
        idempotency_key=text,
        payload=text,
        detail=text,
        lag_ms=10_000,
    )
    assert RecordEncoder().encode(record) == fastavro_bytes(record)


@given(LONG)
def test_long_encoding_equals_fastavro(value: int) -> None:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, "long", value)
    assert long_bytes(value) == buffer.getvalue()


@settings(  # files of many records are the point: large inputs are expected here
    max_examples=50, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(st.lists(records(READABLE_STAMP), max_size=40))
def test_files_read_back_with_fastavro_to_the_same_records(batch: list[ArchiveRecord]) -> None:
    data = encode_archive(batch)
    reader = fastavro.reader(io.BytesIO(data))
    assert reader.metadata["avro.codec"] == ARCHIVE_CODEC
    assert reader.metadata["pik.archive_fingerprint"] == archive_fingerprint()
    rows = list(reader)
    assert rows == [_as_read(record) for record in batch]
    assert rows == list(fastavro.reader(io.BytesIO(_fastavro_file(batch))))


def _fastavro_file(batch: list[ArchiveRecord]) -> bytes:
    buffer = io.BytesIO()
    fastavro.writer(buffer, SCHEMA, [r.to_avro() for r in batch], codec=ARCHIVE_CODEC)
    return buffer.getvalue()


def _as_read(record: ArchiveRecord) -> dict[str, Any]:
    """What a reader gives back for ``record``: times as aware UTC datetimes."""
    row = record.to_avro()
    for name in ("event_time", "ingest_time", "arrival_time"):
        value = row[name]
        if isinstance(value, int):
            row[name] = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=value)
        elif isinstance(value, datetime):
            row[name] = value.astimezone(UTC)
    return row


# -- an independent reading of the container format, straight from the Avro specification -----


def _long(data: bytes, at: int) -> tuple[int, int]:
    shift = n = 0
    while True:
        byte = data[at]
        at += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return (n >> 1) ^ -(n & 1), at


def _blocks(data: bytes) -> list[tuple[int, bytes]]:
    """(record count, inflated bytes) of each block of a container file."""
    assert data[:4] == b"Obj\x01"
    at = 4
    while True:  # the metadata map: blocks of (string key, bytes value), ended by a 0 count
        count, at = _long(data, at)
        if count == 0:
            break
        if count < 0:  # a negative count is followed by the block's byte size
            _, at = _long(data, at)
        for _ in range(abs(count)):
            for _ in range(2):
                size, at = _long(data, at)
                at += size
    sync, at = data[at : at + 16], at + 16
    out = []
    while at < len(data):
        count, at = _long(data, at)
        size, at = _long(data, at)
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, no zlib header
        out.append((count, inflater.decompress(data[at : at + size])))
        assert inflater.eof and not inflater.unused_data  # one whole stream, nothing after
        at += size
        assert data[at : at + 16] == sync
        at += 16
    return out


def test_large_files_are_split_into_blocks_that_all_read_back() -> None:
    raw = bytes(range(256)) * 40  # ~10 kB a record: a block of ~1 MiB holds ~100
    batch = [_plain(i, raw) for i in range(250)]
    data = encode_archive(batch)
    blocks = _blocks(data)
    assert len(blocks) >= 2
    assert sum(count for count, _ in blocks) == 250
    assert b"".join(body for _, body in blocks) == b"".join(fastavro_bytes(r) for r in batch)
    assert list(decode_archive(data)) == batch


def test_blocks_are_raw_deflate_as_the_specification_says() -> None:
    records = [_plain(i, b"x") for i in range(3)]
    ((count, body),) = _blocks(encode_archive(records))
    assert count == 3
    assert body == b"".join(fastavro_bytes(r) for r in records)


def _plain(i: int, raw: bytes) -> ArchiveRecord:
    now = datetime(2025, 12, 29, 1, 0, tzinfo=UTC)
    return ArchiveRecord(
        event_id=f"{i:064x}",
        status="ACCEPTED",
        ingest_time=now,
        raw=raw,
        provenance=Provenance(f"kinesis:s:shard:{i}:0", "kinesis", stream="s", shard_id="shard"),
        source="demo",
        event_type="heartbeat",
        entity_id=f"user_{i % 7}",
        event_time=now - timedelta(seconds=i),
        lag_ms=i * 1000,
        payload='{"steps":10}',
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"ingest_time": datetime(2025, 12, 29, 1, 0)},  # naive: fastavro reads it as local time
        {"lag_ms": True},
        {"source": 7},
        {"raw": bytearray(b"x")},
        {"payload": b"{}"},
    ],
)
def test_values_outside_the_plain_types_are_left_to_fastavro(changes: dict[str, Any]) -> None:
    fields = {
        "event_id": "e",
        "status": "ACCEPTED",
        "ingest_time": datetime(2025, 12, 29, 1, 0, tzinfo=UTC),
        "raw": b"x",
        "provenance": Provenance("o", "http"),
        **changes,
    }
    record = ArchiveRecord(**fields)
    with pytest.raises(Unplain):
        RecordEncoder().encode(record)
    try:
        expected: bytes | None = fastavro_bytes(record)
    except Exception:
        expected = None
    if expected is None:  # fastavro refuses it: so does the file encoder, as before
        with pytest.raises(Exception):  # noqa: B017 - whatever fastavro raises
            encode_archive([record])
    else:
        assert _blocks(encode_archive([record])) == [(1, expected)]
