"""One registry for the whole kit: the tap decodes with the folder named by ``[schemas]
registry``, not with the kit's shipped samples."""

from __future__ import annotations

import json
from pathlib import Path

from consumers.tap.binding import binding_from_table
from infra.clock import FixedClock
from pik.kit import build_kit
from pik.settings import Settings
from schemas.registry import encode_confluent
from tests.integration.test_tap import FAST, archived, create_stream, put

# A schema the samples do not have, under id 1 (the first id a Confluent registry hands out).
SCHEMA = {
    "type": "record",
    "name": "Shipment",
    "fields": [
        {"name": "shipment_id", "type": "string"},
        {"name": "warehouse", "type": "string"},
    ],
}


def user_registry(tmp_path: Path) -> Path:
    folder = tmp_path / "registry"
    (folder / "shipping" / "shipped").mkdir(parents=True)
    (folder / "shipping" / "shipped" / "v1.avsc").write_text(json.dumps(SCHEMA))
    (folder / "ids.json").write_text(json.dumps({"shipping/shipped/v1": 1}))
    config = tmp_path / "pik.toml"
    config.write_text(f'[schemas]\nregistry = "{folder}"\n')
    return config


def test_the_tap_decodes_with_the_configured_registry(
    settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    config = user_registry(tmp_path)
    kit = build_kit(settings.model_copy(update={"config": config}), clock=clock)
    kit.bootstrap().run(demo_stream=False)
    entry = kit.registry.get("shipping", "shipped", 1)
    assert entry is not None and kit.registry.by_id(1) == entry
    bodies = [
        encode_confluent(entry, {"shipment_id": f"s-{n}", "warehouse": "W1"}) for n in range(5)
    ]
    stream = create_stream(kit, shards=1)
    put(kit, stream, [("k", b) for b in bodies])
    binding = binding_from_table(
        {
            "stream": stream,
            "format": "avro-confluent",
            "entity_id": "$.warehouse",
            "idempotency_key": "$.shipment_id",
        }
    )

    summary = kit.tap_worker(binding, options=FAST).run(once=True).to_json()

    assert (summary["accepted"], summary["rejected"]) == (5, 0)
    records = archived(kit)
    assert sorted(r.raw for r in records) == sorted(bodies)
    assert {(r.source, r.event_type) for r in records} == {("shipping", "shipped")}


def test_records_from_confluents_own_serializer_are_accepted_byte_exact(
    settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    """confluent-kafka's AvroSerializer (mock:// registry hands out id 1), the same schema in
    the configured folder under id 1: every record accepted, raw bytes archived as produced."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    client = SchemaRegistryClient.new_client({"url": "mock://registry-test"})
    serialize = AvroSerializer(client, json.dumps(SCHEMA))
    context = SerializationContext("shipments", MessageField.VALUE)
    bodies = [serialize({"shipment_id": f"s-{n}", "warehouse": "W2"}, context) for n in range(20)]
    assert all(b is not None and b[:5] == b"\x00\x00\x00\x00\x01" for b in bodies)
    config = user_registry(tmp_path)
    kit = build_kit(settings.model_copy(update={"config": config}), clock=clock)
    kit.bootstrap().run(demo_stream=False)
    stream = create_stream(kit, shards=1)
    put(kit, stream, [("k", b) for b in bodies if b is not None])
    binding = binding_from_table(
        {
            "stream": stream,
            "format": "avro-confluent",
            "entity_id": "$.warehouse",
            "idempotency_key": "$.shipment_id",
        }
    )

    summary = kit.tap_worker(binding, options=FAST).run(once=True).to_json()

    assert (summary["accepted"], summary["rejected"]) == (20, 0)
    assert sorted(r.raw for r in archived(kit)) == sorted(b for b in bodies if b is not None)
