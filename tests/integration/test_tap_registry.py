"""One registry for the whole kit: the tap decodes with the folder named by ``[schemas]
registry``, not with the kit's shipped samples."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from consumers.tap.binding import TapBinding, binding_from_table
from infra.clock import FixedClock
from infra.schema_registry import RegistryUnavailable
from pik.kit import build_kit
from pik.settings import Settings
from schemas.registry import SchemaRegistry, encode_confluent
from tests.integration.confluent_fake import FakeRegistry, serve
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


# -- a Confluent-compatible registry by URL ------------------------------------------------------
SHIPMENT_V2 = {
    **SCHEMA,
    "fields": [*SCHEMA["fields"], {"name": "carrier", "type": "string", "default": "none"}],
}


def confluent_binding(stream: str, url: str) -> TapBinding:
    return binding_from_table(
        {
            "stream": stream,
            "format": "avro-confluent",
            "registry_url": url,
            "source": "shipping",
            "entity_id": "$.warehouse",
            "idempotency_key": "$.shipment_id",
        }
    )


def test_unknown_ids_are_resolved_from_the_registry_url_and_a_new_version_without_restart(
    settings: Settings, clock: FixedClock
) -> None:
    """The producer's own serializer and the tap share one mock:// registry: an empty folder,
    v1 then (while the same kit runs on) v2 are looked up once each and every record accepted."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    client = SchemaRegistryClient.new_client({"url": "mock://shipping"})
    kit = build_kit(settings, clock=clock)
    kit.confluent_clients = lambda url, credentials: client
    kit.bootstrap().run(demo_stream=False)
    assert len(kit.registry) == 0  # nothing in any folder
    context = SerializationContext("shipments", MessageField.VALUE)
    v1 = AvroSerializer(client, json.dumps(SCHEMA))
    stream = create_stream(kit, shards=1)
    first = [v1({"shipment_id": f"a-{n}", "warehouse": "W1"}, context) for n in range(10)]
    put(kit, stream, [("k", b) for b in first if b is not None])
    binding = confluent_binding(stream, "mock://shipping")

    summary = kit.tap_worker(binding, options=FAST).run(once=True).to_json()
    assert (summary["accepted"], summary["rejected"]) == (10, 0)

    v2 = AvroSerializer(client, json.dumps(SHIPMENT_V2))  # the producer's new version: id 2
    second = [
        v2({"shipment_id": f"b-{n}", "warehouse": "W1", "carrier": "dhl"}, context)
        for n in range(10)
    ]
    assert all(b is not None and b[:5] == b"\x00\x00\x00\x00\x02" for b in second)
    put(kit, stream, [("k", b) for b in second if b is not None])
    summary = kit.tap_worker(binding, options=FAST).run(once=True).to_json()

    assert (summary["accepted"], summary["rejected"]) == (10, 0)
    remote = kit.remote_schemas(binding)
    assert remote is not None and remote.lookups == 2  # one per schema id, not per record
    records = archived(kit)
    assert sorted(r.raw for r in records) == sorted(b for b in first + second if b is not None)
    assert {r.event_type for r in records} == {"Shipment"}  # the writer schema's name
    carriers = {json.loads(r.payload or "{}").get("carrier") for r in records}
    assert carriers == {None, "dhl"}


def test_an_id_the_registry_lacks_is_rejected_naming_the_framing_and_the_id(
    settings: Settings, clock: FixedClock
) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    client = SchemaRegistryClient.new_client({"url": "mock://empty"})
    kit = build_kit(settings, clock=clock)
    kit.confluent_clients = lambda url, credentials: client
    kit.bootstrap().run(demo_stream=False)
    stream = create_stream(kit, shards=1)
    body = b"\x00\x00\x00\x00\x63" + b"\x02x\x02y"  # schema id 99
    put(kit, stream, [("k", body)])

    summary = kit.tap_worker(confluent_binding(stream, "mock://empty"), options=FAST).run(once=True)

    assert summary.to_json()["reasons"] == {"unknown_schema": 1}
    (record,) = archived(kit)
    assert record.raw == body and record.reason == "unknown_schema"
    assert record.detail is not None
    assert "Confluent framing: schema id 99" in record.detail
    assert "mock://empty" in record.detail


def test_a_registry_that_is_down_holds_the_records_back_until_it_answers(
    settings: Settings, clock: FixedClock
) -> None:
    """Over real HTTP: the registry answers 503 at first; the tap waits (registry_waits), nothing
    is quarantined, and once it answers every record is accepted. Basic-auth credentials come
    from the settings (the environment), never the config."""
    with serve(FakeRegistry()) as registry:
        schema_id = registry.add("shipments-value", SCHEMA)
        registry.fail_next = 4  # the client tries 3 times per lookup: two lookups fail
        kit = build_kit(
            settings.model_copy(
                update={"registry_user": "tap", "registry_password": SecretStr("s3cret")}
            ),
            clock=clock,
        )
        kit.bootstrap().run(demo_stream=False)
        stream = create_stream(kit, shards=1)
        folder_entry = SchemaRegistry().register("x", "y", 1, SCHEMA, schema_id=schema_id)
        bodies = [
            encode_confluent(folder_entry, {"shipment_id": f"s-{n}", "warehouse": "W3"})
            for n in range(5)
        ]
        put(kit, stream, [("k", b) for b in bodies])

        summary = kit.tap_worker(confluent_binding(stream, registry.url), options=FAST).run(
            once=True
        )

    doc = summary.to_json()
    assert (doc["accepted"], doc["rejected"]) == (5, 0)
    assert doc["shards"][0]["registry_waits"] >= 1
    assert sorted(r.raw for r in archived(kit)) == sorted(bodies)
    expected = "Basic " + base64.b64encode(b"tap:s3cret").decode()
    assert set(registry.authorizations) == {expected}


def test_with_once_a_registry_down_throughout_fails_the_run_and_checkpoints_nothing(
    settings: Settings, clock: FixedClock
) -> None:
    with serve(FakeRegistry()) as registry:
        schema_id = registry.add("shipments-value", SCHEMA)
        registry.fail_next = 10**6
        kit = build_kit(settings, clock=clock)
        kit.bootstrap().run(demo_stream=False)
        stream = create_stream(kit, shards=1)
        entry = SchemaRegistry().register("x", "y", 1, SCHEMA, schema_id=schema_id)
        body = encode_confluent(entry, {"shipment_id": "s-1", "warehouse": "W4"})
        put(kit, stream, [("k", body)])
        binding = confluent_binding(stream, registry.url)

        with pytest.raises(RegistryUnavailable, match="schema id 1"):
            kit.tap_worker(binding, options=FAST).run(once=True)
        assert archived(kit) == []  # not quarantined: not decided

        registry.fail_next = 0  # back up: the next run reads it from the same checkpoint
        summary = kit.tap_worker(binding, options=FAST).run(once=True).to_json()

    assert (summary["accepted"], summary["rejected"]) == (1, 0)
    assert [r.raw for r in archived(kit)] == [body]
