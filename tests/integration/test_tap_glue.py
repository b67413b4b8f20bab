"""``format = "avro-glue"`` on the embedded backend: records framed by the
``aws-glue-schema-registry`` package (its KafkaSerializer, and its codec with zlib compression),
schemas registered in moto's Glue Schema Registry and looked up by version UUID."""

from __future__ import annotations

import json
import uuid
import zlib
from typing import Any

import pytest

from consumers.tap.binding import TapBinding, binding_from_table
from infra.clock import FixedClock
from pik.kit import Kit, build_kit
from pik.settings import Settings
from tests.integration.test_tap import FAST, archived, create_stream, put

glue_registry = pytest.importorskip("aws_schema_registry", reason="a dev dependency")

SCHEMA = {
    "type": "record",
    "name": "Shipment",
    "fields": [
        {"name": "shipment_id", "type": "string"},
        {"name": "warehouse", "type": "string"},
    ],
}


class Producer:
    """The package's serializer against the kit's Glue endpoint (the embedded moto)."""

    def __init__(self, kit: Kit, registry: str) -> None:
        from aws_schema_registry import SchemaRegistryClient
        from aws_schema_registry.avro import AvroSchema
        from aws_schema_registry.serde import KafkaSerializer

        glue = kit.clients.client("glue")
        glue.create_registry(RegistryName=registry)
        self.serializer = KafkaSerializer(SchemaRegistryClient(glue, registry_name=registry))
        self.schema = AvroSchema(json.dumps(SCHEMA))

    def plain(self, datum: dict[str, Any]) -> bytes:
        from aws_schema_registry import DataAndSchema

        framed: bytes = self.serializer.serialize("shipments", DataAndSchema(datum, self.schema))
        return framed

    def compressed(self, datum: dict[str, Any]) -> bytes:
        """The same framing with the package's codec compressing (zlib, byte 05): its
        serializer always writes 00."""
        from aws_schema_registry.codec import encode

        version = self.serializer._get_schema_version("shipments", self.schema)
        return encode(self.schema.write(datum), version.version_id, compression=True)


def glue_binding(stream: str) -> TapBinding:
    return binding_from_table(
        {
            "stream": stream,
            "format": "avro-glue",
            "entity_id": "$.warehouse",
            "idempotency_key": "$.shipment_id",
        }
    )


@pytest.fixture
def glue_kit(settings: Settings, clock: FixedClock) -> Kit:
    kit = build_kit(settings, clock=clock)
    kit.bootstrap().run(demo_stream=False)
    return kit


def test_plain_and_zlib_framed_records_are_accepted_byte_exact_with_their_glue_names(
    glue_kit: Kit,
) -> None:
    registry = f"orders-{uuid.uuid4().hex[:8]}"
    producer = Producer(glue_kit, registry)
    plain = [producer.plain({"shipment_id": f"p-{n}", "warehouse": "W1"}) for n in range(10)]
    packed = [producer.compressed({"shipment_id": f"z-{n}", "warehouse": "W2"}) for n in range(10)]
    assert {b[:2] for b in plain} == {b"\x03\x00"} and {b[:2] for b in packed} == {b"\x03\x05"}
    version_id = uuid.UUID(bytes=plain[0][2:18])
    stream = create_stream(glue_kit, shards=1)
    put(glue_kit, stream, [("k", b) for b in plain + packed])
    binding = glue_binding(stream)

    summary = glue_kit.tap_worker(binding, options=FAST).run(once=True).to_json()

    assert (summary["accepted"], summary["rejected"]) == (20, 0)
    remote = glue_kit.remote_schemas(binding)
    assert remote is not None and remote.lookups == 1  # one GetSchemaVersion for 20 records
    records = archived(glue_kit)
    assert sorted(r.raw for r in records) == sorted(plain + packed)
    assert {(r.source, r.event_type) for r in records} == {(registry, "shipments-value")}
    assert {r.schema_ref for r in records} == {f"glue:{registry}/shipments-value/v1 ({version_id})"}
    assert {json.loads(r.payload or "{}")["warehouse"] for r in records} == {"W1", "W2"}


def test_unresolvable_and_broken_glue_records_keep_their_bytes_and_say_why(
    glue_kit: Kit,
) -> None:
    producer = Producer(glue_kit, f"orders-{uuid.uuid4().hex[:8]}")
    good = producer.plain({"shipment_id": "s-1", "warehouse": "W1"})
    stranger = uuid.uuid4()
    unknown = b"\x03\x00" + stranger.bytes + good[18:]
    corrupt = b"\x03\x05" + good[2:18] + b"not zlib at all"
    confluent = b"\x00\x00\x00\x00\x01" + good[18:]
    bomb = b"\x03\x05" + good[2:18] + zlib.compress(b"\x00" * (2 * 1024 * 1024))
    stream = create_stream(glue_kit, shards=1)
    put(glue_kit, stream, [("k", b) for b in (unknown, corrupt, confluent, bomb)])

    glue_kit.tap_worker(glue_binding(stream), options=FAST).run(once=True)

    by_raw = {r.raw: r for r in archived(glue_kit)}
    assert by_raw[unknown].reason == "unknown_schema"
    assert f"Glue framing: schema version {stranger}" in (by_raw[unknown].detail or "")
    assert by_raw[corrupt].reason == "undecodable"
    assert "zlib" in (by_raw[corrupt].detail or "") and str(uuid.UUID(bytes=good[2:18])) in (
        by_raw[corrupt].detail or ""
    )
    assert by_raw[confluent].reason == "undecodable"
    assert "not AWS Glue Schema Registry framing" in (by_raw[confluent].detail or "")
    assert by_raw[bomb].reason == "too_large"


def test_a_glue_endpoint_that_cannot_answer_is_unavailable_not_unknown() -> None:
    """The adapter's translation: no answer is ``RegistryUnavailable`` (the tap then waits, as
    tests/integration/test_tap_registry.py shows for Confluent), never an unknown schema."""
    import boto3
    from botocore.config import Config

    from infra.schema_registry import GlueSchemaSource, RegistryUnavailable

    glue = boto3.client(
        "glue",
        endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    version_id = uuid.uuid4()
    with pytest.raises(RegistryUnavailable, match=str(version_id)):
        GlueSchemaSource(glue).lookup(version_id.bytes)
