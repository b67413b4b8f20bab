"""pik/lambda_tap.py: a Kinesis event source mapping's batches through the same sink as the tap,
against the embedded backend."""

from __future__ import annotations

import base64
import json
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from consumers.ingest import IngestResult, IngestSink, Submission
from consumers.tap.binding import TapBinding
from infra.archive import ArchiveReader
from infra.errors import BackendError
from pik.cli.schemas import demo_registry_folder
from pik.config import parse_config
from pik.kit import Kit
from pik.lambdas import tap as lambda_tap
from pik.settings import Settings
from schemas.envelope import Event
from schemas.identity import event_id
from schemas.kpl import aggregate
from schemas.registry import SchemaRegistry

ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/orders"
CONFIG_TOML = f"""
[[tap]]
stream = "{ARN}"
source = "orders-json"
event_type = "$.type"
entity_id = "$.customer"
idempotency_key = "$.id"
"""
CONFIG = parse_config(tomllib.loads(CONFIG_TOML))


def order(n: int) -> bytes:
    return json.dumps({"type": "order_placed", "customer": f"c-{n % 3}", "id": f"o-{n}"}).encode()


def event_record(seq: int, data: bytes, key: str = "pk") -> dict[str, Any]:
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": key,
            "sequenceNumber": str(seq),
            "data": base64.b64encode(data).decode(),
            "approximateArrivalTimestamp": 1767000000.25,
        },
        "eventSource": "aws:kinesis",
        "eventID": f"shardId-000000000003:{seq}",
        "eventSourceARN": ARN,
        "eventName": "aws:kinesis:record",
    }


def kinesis_event() -> dict[str, Any]:
    (agg,) = aggregate([(f"c-{n}", order(n)) for n in range(10)])
    return {
        "Records": [
            event_record(100, agg.data),
            event_record(101, order(50)),
            event_record(102, order(3)),  # a duplicate of the aggregate's o-3
            event_record(103, b"not json"),
        ]
    }


def handle(kit: Kit, event: dict[str, Any], sink: IngestSink | None = None) -> dict[str, Any]:
    return lambda_tap.handle_kinesis_event(
        event,
        sink=sink or kit.sink,
        config=CONFIG,
        registry=SchemaRegistry.load(demo_registry_folder()),
        max_event_bytes=kit.settings.max_event_bytes,
    )


def test_a_batch_is_made_durable_and_a_retry_is_absorbed(kit: Kit) -> None:
    assert handle(kit, kinesis_event()) == {"batchItemFailures": []}
    assert kit.metrics.counter("IngestCount") == 11
    assert kit.metrics.counter("DuplicateCount") == 1
    assert kit.metrics.counter("RejectedCount") == 1
    assert handle(kit, kinesis_event()) == {"batchItemFailures": []}
    assert kit.metrics.counter("IngestCount") == 11  # the retried batch added nothing
    assert kit.metrics.counter("DuplicateCount") == 1


def test_what_is_not_durable_is_reported_for_retry(kit: Kit) -> None:
    class Down(IngestSink):
        def ingest(
            self, batch: Sequence[Submission], *, label: str, at: datetime | None = None
        ) -> list[IngestResult]:
            raise BackendError("S3 put: InternalError", service="s3")

    broken = {"Records": [*kinesis_event()["Records"], {"kinesis": {"sequenceNumber": "104"}}]}
    sink = Down(kit.archive, kit.index, kit.clock, kit.metrics)
    out = handle(kit, broken, sink=sink)
    assert out == {"batchItemFailures": [{"itemIdentifier": "104"}, {"itemIdentifier": "100"}]}


def test_the_handler_builds_the_kit_from_the_environment(
    kit: Kit, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "pik.toml"
    config.write_text(CONFIG_TOML)
    monkeypatch.setenv("PIK_CONFIG", str(config))
    monkeypatch.setenv("AWS_ENDPOINT_URL", settings.endpoint_url or "")
    for name in ("bucket", "events_table", "leases_table"):
        monkeypatch.setenv(f"PIK_{name.upper()}", getattr(settings, name))
    lambda_tap._built.cache_clear()
    try:
        assert lambda_tap.handler(kinesis_event(), None) == {"batchItemFailures": []}
    finally:
        lambda_tap._built.cache_clear()
    o50 = Event(
        source="orders-json",
        event_type="order_placed",
        entity_id="c-2",
        event_time=datetime.fromtimestamp(1767000000.25, UTC),
        payload={},
        idempotency_key="o-50",
    )
    item = kit.index.get(event_id(o50))
    assert item is not None
    assert item["first_occurrence"] == "kinesis:orders:shardId-000000000003:101:0"


def test_a_malformed_event_record_is_quarantined_not_retried_forever(kit: Kit) -> None:
    bad_arn = {
        **event_record(200, order(60)),
        "eventSourceARN": "arn:aws:kinesis:us-east-1:1:orders",
    }
    bad_data = event_record(201, order(61))
    bad_data["kinesis"]["data"] = "%%% not base64 %%%"
    seen: list[IngestResult] = []

    class Watching(IngestSink):
        def ingest(
            self, batch: Sequence[Submission], *, label: str, at: datetime | None = None
        ) -> list[IngestResult]:
            results = super().ingest(batch, label=label, at=at)
            seen.extend(results)
            return results

    sink = Watching(kit.archive, kit.index, kit.clock, kit.metrics)
    event = {"Records": [bad_arn, bad_data, event_record(202, order(62))]}
    assert handle(kit, event, sink=sink) == {"batchItemFailures": []}
    rejected = [r for r in seen if r.reason is not None]
    assert [r.detail.split(": ")[:2] for r in rejected if r.detail] == [
        ["malformed_event_record", "eventSourceARN"],
        ["malformed_event_record", "kinesis.data"],
    ]
    for result, raw in zip(rejected, [bad_arn, bad_data], strict=True):
        assert result.archive is not None and "quarantine/" in result.archive.key
        assert json.loads(ArchiveReader(kit.archive).read(result.archive).raw) == raw
    assert kit.metrics.counter("IngestCount") == 1


def test_a_record_whose_registry_is_down_is_retried_from_and_what_precedes_it_is_durable(
    kit: Kit,
) -> None:
    """A Confluent binding whose registry answers 503: the records before the first one that
    needs it are made durable, that one is the batch's failure (the mapping retries from it),
    nothing is quarantined; with the registry back, the retry is accepted."""
    from schemas.registry import encode_confluent
    from tests.integration.confluent_fake import FakeRegistry, serve

    schema = {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}]}
    with serve(FakeRegistry()) as registry:
        schema_id = registry.add("orders-value", schema)
        folder = SchemaRegistry()
        cached = folder.register("orders", "cached", 1, {**schema, "name": "Cached"}, schema_id=500)
        remote = SchemaRegistry().register("x", "y", 1, schema, schema_id=schema_id)
        config = parse_config(
            {
                "tap": [
                    {
                        "stream": ARN,
                        "format": "avro-confluent",
                        "registry_url": registry.url,
                        "source": "orders",
                        "idempotency_key": "$.id",
                    }
                ]
            }
        )
        kit.registry = folder
        event = {
            "Records": [
                event_record(200, encode_confluent(cached, {"id": "o-1"})),  # in the folder
                event_record(201, encode_confluent(remote, {"id": "o-2"})),  # needs the registry
                event_record(202, encode_confluent(cached, {"id": "o-3"})),
            ]
        }
        registry.fail_next = 10**6

        def run(e: dict[str, Any]) -> dict[str, Any]:
            return lambda_tap.handle_kinesis_event(
                e,
                sink=kit.sink,
                config=config,
                registry=folder,
                max_event_bytes=kit.settings.max_event_bytes,
                decoders=kit.decoder,
            )

        assert run(event) == {"batchItemFailures": [{"itemIdentifier": "201"}]}
        assert (kit.metrics.counter("IngestCount"), kit.metrics.counter("RejectedCount")) == (1, 0)
        registry.fail_next = 0
        retry = {"Records": event["Records"][1:]}
        assert run(retry) == {"batchItemFailures": []}
    assert (kit.metrics.counter("IngestCount"), kit.metrics.counter("RejectedCount")) == (3, 0)


def test_the_handler_reuses_one_decoder_per_binding(kit: Kit) -> None:
    """The Lambda tap asks the kit for a decoder on every batch: it is built once."""
    binding = CONFIG.binding_for("orders")
    assert binding is not None
    built: list[TapBinding] = []
    original = lambda_tap.RecordDecoder.__init__

    def counting(self: Any, b: TapBinding, *args: Any, **kwargs: Any) -> None:
        built.append(b)
        original(self, b, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lambda_tap.RecordDecoder, "__init__", counting)
        for _ in range(3):
            out = lambda_tap.handle_kinesis_event(
                kinesis_event(),
                sink=kit.sink,
                config=CONFIG,
                registry=kit.registry,
                max_event_bytes=kit.settings.max_event_bytes,
                decoders=kit.decoder,
            )
            assert out == {"batchItemFailures": []}
    assert built == [binding]
    assert kit.decoder(binding) is kit.decoder(binding)
