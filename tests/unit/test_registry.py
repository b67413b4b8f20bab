"""schemas/registry.py: schemas by fingerprint (single-object) and by Confluent id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pik.cli.schemas import demo_registry_folder
from schemas.codec import schema_fingerprint
from schemas.registry import (
    RegistryError,
    SchemaRegistry,
    encode_confluent,
    encode_single_object,
)

SCHEMA = {"type": "record", "name": "Ping", "fields": [{"name": "n", "type": "int"}]}


def test_the_shipped_registry_loads_with_ids() -> None:
    registry = SchemaRegistry.load(demo_registry_folder())
    v1 = registry.get("orders-service", "order_placed", 1)
    latest = registry.get("orders-service", "order_placed")
    assert v1 is not None and latest is not None
    assert latest.version == 2
    assert registry.by_id(1) is v1
    assert registry.by_fingerprint(v1.fingerprint_bytes) is v1
    assert registry.by_id(999) is None


def test_single_object_header_is_the_little_endian_crc64_of_the_spec() -> None:
    # Avro specification: the CRC-64-AVRO fingerprint of "null" is 0x63dd24e7cc258f8a.
    registry = SchemaRegistry()
    entry = registry.register("s", "t", 1, "null")
    assert entry.fingerprint_bytes == (0x63DD24E7CC258F8A).to_bytes(8, "little")
    assert encode_single_object(entry, None)[:10] == b"\xc3\x01" + entry.fingerprint_bytes  # type: ignore[arg-type]


def test_confluent_framing_and_a_folder_of_schemas(tmp_path: Path) -> None:
    folder = tmp_path / "registry"
    (folder / "app" / "ping").mkdir(parents=True)
    (folder / "app" / "ping" / "v1.avsc").write_text(json.dumps(SCHEMA))
    (folder / "app" / "ping" / "notes.txt").write_text("ignored")
    (folder / "ids.json").write_text(json.dumps({"_doc": "x", "app/ping/v1": 77}))
    registry = SchemaRegistry.load(folder)
    entry = registry.get("app", "ping", 1)
    assert entry is not None and entry.fingerprint == schema_fingerprint(SCHEMA)
    assert encode_confluent(entry, {"n": 5}) == b"\x00\x00\x00\x00\x4d\x0a"
    assert len(registry) == 1


def test_broken_folders_fail_with_the_subject(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "v1.avsc").write_text('{"type": "record"}')
    with pytest.raises(RegistryError, match="a/b/v1: bad schema"):
        SchemaRegistry.load(tmp_path)
    (tmp_path / "a" / "b" / "v1.avsc").write_text(json.dumps(SCHEMA))
    (tmp_path / "ids.json").write_text(json.dumps({"a/b/v9": 1}))
    with pytest.raises(RegistryError, match="do not exist"):
        SchemaRegistry.load(tmp_path)


def test_an_id_is_never_given_to_two_schemas() -> None:
    registry = SchemaRegistry()
    registry.register("a", "b", 1, SCHEMA, schema_id=3)
    other = {**SCHEMA, "name": "Pong"}
    with pytest.raises(RegistryError, match="schema id 3 given to both"):
        registry.register("a", "c", 1, other, schema_id=3)


def test_a_registry_with_no_folder_is_empty_so_ids_1_and_2_are_the_users() -> None:
    registry = SchemaRegistry.load(None)
    assert (registry.by_id(1), registry.by_id(2), list(registry)) == (None, None, [])
    registry.register("billing", "invoiced", 1, {"type": "string"}, schema_id=1)
    entry = registry.by_id(1)
    assert entry is not None and entry.subject == "billing/invoiced/v1"
