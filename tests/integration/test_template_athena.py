"""The Athena/Glue tables (infra/athena/*.sql) read the archive as the kit writes it.

Checked without Athena: the columns and the reader schema are the archive record schema
(schemas/archive_record.avsc, a contract) field for field; a container file written by the
kit's own codec reads back through the reader schema with fastavro; and the projected
partition template matches the keys ``infra.keys.archive_key`` writes, including escaped values.
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pytest

from infra.keys import QUARANTINE_PREFIX, RAW_PREFIX, archive_key
from schemas.codec import ArchiveRecord, Provenance, archive_schema_json, encode_archive

ATHENA = Path(__file__).resolve().parents[2] / "infra" / "athena"
TABLES = {"pik_raw": RAW_PREFIX, "pik_quarantine": QUARANTINE_PREFIX}
HIVE_TYPES = {"string": "string", "long": "bigint", "bytes": "binary"}
PARTITIONS = [
    ("source_key", "string"),
    ("event_type_key", "string"),
    ("ingest_date", "string"),
    ("hour", "int"),
]


def ddl(table: str) -> str:
    return (ATHENA / f"{table}.sql").read_text("utf-8")


def _columns(block: str) -> list[tuple[str, str]]:
    return re.findall(r"^\s*`(\w+)` (\w+)", block, re.M)


def properties(text: str, clause: str) -> dict[str, str]:
    block = text.split(clause, 1)[1].split(")", 1)[0] if clause != "TBLPROPERTIES" else ""
    if clause == "TBLPROPERTIES":
        block = text.split("TBLPROPERTIES (", 1)[1].rsplit(")", 1)[0]
    return dict(re.findall(r"'([^']+)'\s*=\s*'([^']*)'", block))


def reader_schema(text: str) -> dict[str, Any]:
    literal = re.search(r"'avro\.schema\.literal'\s*=\s*'([^']+)'", text)
    assert literal is not None
    schema: dict[str, Any] = json.loads(literal[1])
    return schema


def _plain(avro_type: Any) -> Any:
    """An Avro type with logical types read as their underlying type."""
    if isinstance(avro_type, list):
        return [_plain(t) for t in avro_type]
    if isinstance(avro_type, dict) and "logicalType" in avro_type:
        return avro_type["type"]
    return avro_type


def test_the_athena_files_are_the_tables() -> None:
    assert sorted(p.stem for p in ATHENA.glob("*.sql")) == sorted(TABLES)


@pytest.mark.parametrize("table", TABLES)
def test_columns_and_reader_schema_are_the_archive_record_schema(table: str) -> None:
    text = ddl(table)
    contract = archive_schema_json()["fields"]
    head, rest = text.split("PARTITIONED BY", 1)
    expected = []
    for field in contract:
        kind = _plain(field["type"])
        kind = next(t for t in kind if t != "null") if isinstance(kind, list) else kind
        expected.append((field["name"], HIVE_TYPES[kind]))
    assert _columns(head) == expected
    assert _columns(rest.split("ROW FORMAT", 1)[0]) == PARTITIONS
    schema = reader_schema(text)
    assert [f["name"] for f in schema["fields"]] == [f["name"] for f in contract]
    for ours, theirs in zip(schema["fields"], contract, strict=True):
        assert ours["type"] == _plain(theirs["type"]), ours["name"]
        assert ours.get("default", "none") == theirs.get("default", "none"), ours["name"]


@pytest.mark.parametrize("table", TABLES)
def test_a_file_the_kit_writes_reads_through_the_reader_schema(table: str) -> None:
    when = datetime(2025, 12, 28, 23, 59, 59, 123456, tzinfo=UTC)
    record = ArchiveRecord(
        event_id="e" * 64,
        status="REJECTED" if table == "pik_quarantine" else "ACCEPTED",
        ingest_time=when,
        raw=b'{"steps": 10}\xff',
        provenance=Provenance("kinesis:orders:shard-0:1:0", "kinesis", stream="orders"),
        source="demo",
        event_type="heartbeat",
        event_time=when,
        lag_ms=5,
        payload='{"steps":10}',
    )
    reader = fastavro.parse_schema(reader_schema(ddl(table)))
    [row] = list(fastavro.reader(io.BytesIO(encode_archive([record])), reader_schema=reader))
    assert isinstance(row, dict)
    # Athena's Avro SerDe reads these as the reader schema's long; fastavro applies the
    # writer's logical type anyway, so compare as microseconds since the epoch.
    micros = int(when.timestamp()) * 1_000_000 + when.microsecond
    for name in ("event_time", "ingest_time"):
        value = row[name]
        if isinstance(value, datetime):
            value = int(value.timestamp()) * 1_000_000 + value.microsecond
        assert value == micros, name
    assert row["raw"] == record.raw
    assert row["stream"] == "orders" and row["arrival_time"] is None


@pytest.mark.parametrize("table", TABLES)
def test_projected_partitions_match_the_keys_the_kit_writes(table: str) -> None:
    text = ddl(table)
    props = properties(text, "TBLPROPERTIES")
    assert props["projection.enabled"] == "true"
    for name, _ in PARTITIONS:
        assert f"projection.{name}.type" in props, name
    assert (
        props["projection.source_key.type"] == props["projection.event_type_key.type"] == "injected"
    )
    assert props["projection.ingest_date.format"] == "yyyy-MM-dd"
    assert (props["projection.hour.range"], props["projection.hour.digits"]) == ("0,23", "2")
    prefix = TABLES[table]
    location = re.search(r"LOCATION '([^']+)'", text)
    assert location is not None and location[1] == f"s3://{{{{BUCKET}}}}/{prefix}/"
    template = props["storage.location.template"]
    assert template.startswith(location[1])
    pattern = re.escape(template.removeprefix("s3://{{BUCKET}}/"))
    pattern = re.sub(r"\\\$\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", pattern)
    when = datetime(2025, 12, 28, 7, 5, tzinfo=UTC)
    for source, event_type in (("orders-service", "order_placed"), ("a.b/../c", None)):
        key = archive_key(
            quarantine=prefix == QUARANTINE_PREFIX,
            source=source,
            event_type=event_type,
            ingest_time=when,
            batch="b",
            first="1",
            last="2",
        )
        match = re.match(pattern, key)
        assert match is not None, key
        assert match["ingest_date"] == "2025-12-28" and match["hour"] == "07"
        assert "/" not in match["source_key"]
    assert set(re.findall(r"\{\{(\w+)\}\}", text)) == {"DATABASE", "BUCKET"}
