"""schemas/codec.py: archive files round-trip every record exactly; fingerprints follow the spec."""

from __future__ import annotations

import copy
import io
import json
import re
from datetime import UTC, datetime

import fastavro
import pytest

from schemas.codec import (
    ArchiveRecord,
    Provenance,
    archive_fingerprint,
    archive_schema_json,
    decode_archive,
    encode_archive,
    schema_fingerprint,
)

INGEST = datetime(2025, 12, 29, 1, 0, 0, 123456, tzinfo=UTC)
EVENT_TIME = datetime(2025, 12, 28, 23, 59, 59, 654321, tzinfo=UTC)


# -- an independent CRC-64-AVRO, straight from the Avro specification ---------------------------

AVRO_EMPTY = 0xC15D213AA4D7A795


def _rabin_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (AVRO_EMPTY & -(fp & 1))
        table.append(fp)
    return table


_TABLE = _rabin_table()


def rabin64(data: bytes) -> int:
    fp = AVRO_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


# -- records ----------------------------------------------------------------------------------


def minimal_record(**changes: object) -> ArchiveRecord:
    fields: dict[str, object] = {
        "event_id": "e" * 64,
        "status": "REJECTED",
        "ingest_time": INGEST,
        "raw": b"",
        "provenance": Provenance(occurrence_id="occ-1", origin="http"),
    }
    fields.update(changes)
    return ArchiveRecord(**fields)  # type: ignore[arg-type]


def full_record(**changes: object) -> ArchiveRecord:
    fields: dict[str, object] = {
        "event_id": "a" * 64,
        "status": "ACCEPTED",
        "ingest_time": INGEST,
        "raw": b'{"source": "demo"}',
        "provenance": Provenance(
            occurrence_id="shardId-000000000001:4961:3",
            origin="kinesis",
            request_id=None,
            stream="orders",
            shard_id="shardId-000000000001",
            sequence_number="49612345678901234567890",
            sub_sequence_number=3,
            partition_key="user_123",
            arrival_time=datetime(2025, 12, 29, 0, 59, 59, 1, tzinfo=UTC),
        ),
        "reason": None,
        "detail": None,
        "source": "demo",
        "event_type": "heartbeat",
        "entity_id": "user_123",
        "event_time": EVENT_TIME,
        "idempotency_key": "k-1",
        "lag_ms": 3_600_469,
        "payload": '{"steps":10}',
        "schema_fingerprint": "c70345637248018f",
    }
    fields.update(changes)
    return ArchiveRecord(**fields)  # type: ignore[arg-type]


def round_trip(records: list[ArchiveRecord]) -> list[ArchiveRecord]:
    return list(decode_archive(encode_archive(records)))


def test_record_with_all_optionals_none_round_trips() -> None:
    record = minimal_record()
    assert round_trip([record]) == [record]


def test_full_record_round_trips_with_aware_utc_times() -> None:
    record = full_record()
    (back,) = round_trip([record])
    assert back == record
    assert back.event_time is not None
    assert back.event_time.utcoffset() is not None
    assert back.ingest_time == INGEST


def test_every_byte_value_in_raw_survives() -> None:
    raw = bytes(range(256))
    (back,) = round_trip([minimal_record(raw=raw)])
    assert back.raw == raw


def test_many_records_keep_their_order() -> None:
    records = [minimal_record(event_id=f"{i:064x}", raw=i.to_bytes(2, "big")) for i in range(300)]
    assert round_trip(records) == records


def test_empty_file_decodes_to_no_records() -> None:
    assert round_trip([]) == []


def test_file_names_the_schema_version_it_was_written_with() -> None:
    reader = fastavro.reader(io.BytesIO(encode_archive([minimal_record()])))
    assert reader.metadata["pik.archive_fingerprint"] == archive_fingerprint()


def test_file_written_with_an_older_schema_still_reads() -> None:
    """Fields are only ever added, with defaults: yesterday's files stay readable."""
    old = copy.deepcopy(archive_schema_json())
    old["fields"] = [
        f for f in old["fields"] if f["name"] not in {"schema_fingerprint", "arrival_time"}
    ]
    row = full_record().to_avro()
    del row["schema_fingerprint"], row["arrival_time"]
    buffer = io.BytesIO()
    fastavro.writer(buffer, fastavro.parse_schema(old), [row])
    (back,) = decode_archive(buffer.getvalue())
    assert back.schema_fingerprint is None
    assert back.provenance.arrival_time is None
    assert back.raw == row["raw"]
    assert back.entity_id == "user_123"


def test_archive_schema_has_the_contract_fields() -> None:
    fields = {f["name"]: f["type"] for f in archive_schema_json()["fields"]}
    contract = [
        "event_id",
        "status",
        "reason",
        "source",
        "event_type",
        "entity_id",
        "event_time",
        "ingest_time",
        "lag_ms",
        "payload",
        "raw",
        "stream",
        "shard_id",
        "sequence_number",
        "sub_sequence_number",
        "partition_key",
        "arrival_time",
        "request_id",
    ]
    assert set(contract) <= set(fields)
    assert fields["raw"] == "bytes"
    # a rejected record may lack these, so they must be nullable
    for name in ["reason", "source", "event_type", "entity_id", "event_time", "lag_ms", "payload"]:
        assert isinstance(fields[name], list)
        assert "null" in fields[name]


def test_envelope_rebuilds_the_event_for_accepted_records() -> None:
    assert full_record().envelope() == {
        "source": "demo",
        "event_type": "heartbeat",
        "entity_id": "user_123",
        "event_time": "2025-12-28T23:59:59.654321Z",
        "payload": {"steps": 10},
        "idempotency_key": "k-1",
    }


def test_rejected_record_has_no_envelope() -> None:
    assert full_record(status="REJECTED").envelope() is None
    assert minimal_record().envelope() is None


# -- fingerprints -------------------------------------------------------------------------------


def test_fingerprint_of_string_is_crc64_avro_per_spec() -> None:
    expected = rabin64(b'"string"')
    # the Avro spec's reference value for "string", as a signed 64-bit long
    assert expected - (1 << 64) == -8142146995180207161
    # fastavro gives the 8 fingerprint bytes little-endian, as Avro single-object encoding does
    assert schema_fingerprint("string") == expected.to_bytes(8, "little").hex()


@pytest.mark.parametrize(
    "schema",
    ["int", "long", "bytes", {"type": "string"}, {"type": "array", "items": "long"}],
)
def test_fingerprint_matches_independent_rabin_of_canonical_form(schema: object) -> None:
    canonical = {
        "int": b'"int"',
        "long": b'"long"',
        "bytes": b'"bytes"',
        json.dumps({"type": "string"}): b'"string"',
        json.dumps({"type": "array", "items": "long"}): b'{"type":"array","items":"long"}',
    }[schema if isinstance(schema, str) else json.dumps(schema)]
    assert schema_fingerprint(schema) == rabin64(canonical).to_bytes(8, "little").hex()  # type: ignore[arg-type]


def test_fingerprint_is_16_hex_digits_and_ignores_docs() -> None:
    with_doc = {"type": "record", "name": "R", "doc": "x", "fields": [{"name": "a", "type": "int"}]}
    without = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}
    value = schema_fingerprint(with_doc)
    assert re.fullmatch(r"[0-9a-f]{16}", value)
    assert value == schema_fingerprint(without)
    assert value != schema_fingerprint({**without, "name": "S"})


def test_archive_fingerprint_is_stable() -> None:
    assert archive_fingerprint() == schema_fingerprint(archive_schema_json())
    assert re.fullmatch(r"[0-9a-f]{16}", archive_fingerprint())
