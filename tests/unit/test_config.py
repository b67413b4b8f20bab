"""pik/config.py: the config file's [[tap]] bindings exactly as ARCHITECTURE.md writes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumers.tap.binding import FieldSpec, Format
from infra.errors import ConfigError
from pik.config import load_config, parse_config

CONTRACT_EXAMPLE = """
[[tap]]
stream = "orders"                 # an existing Kinesis stream (name or ARN)
source = "orders-service"         # a constant, or "$.field"
format = "json"                   # json | avro-confluent | avro-single-object | raw
event_type = "$.type"             # "$.a.b" reads a field; anything else is a constant
entity_id = "$.customer_id"       # default: the record's partition key
event_time = "$.ts"               # default: the record's ApproximateArrivalTimestamp
idempotency_key = "$.order_id"    # default: none
"""


def test_the_architecture_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "pik.toml"
    path.write_text(CONTRACT_EXAMPLE)
    config = load_config(path)
    (binding,) = config.taps
    assert binding.stream == "orders"
    assert binding.format is Format.JSON
    assert binding.source == FieldSpec(constant="orders-service")
    assert binding.event_type == FieldSpec(path=("type",))
    assert binding.entity_id == FieldSpec(path=("customer_id",))
    assert binding.event_time == FieldSpec(path=("ts",))
    assert binding.idempotency_key == FieldSpec(path=("order_id",))
    assert not binding.envelope_mode
    assert config.binding_for("arn:aws:kinesis:us-east-1:123456789012:stream/orders") is binding


def test_defaults_leave_metadata_fields_unmapped() -> None:
    config = parse_config({"tap": [{"stream": "clicks", "source": "web", "event_type": "click"}]})
    (binding,) = config.taps
    assert binding.entity_id is None and binding.event_time is None
    assert binding.idempotency_key is None
    assert parse_config({"tap": [{"stream": "s"}]}).taps[0].envelope_mode


def test_unknown_keys_fail_loudly_listing_them() -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) colour, fromat"):
        parse_config({"tap": [{"stream": "s", "fromat": "json", "colour": "red"}]})
    with pytest.raises(ConfigError, match=r"unknown top-level key\(s\) taps"):
        parse_config({"taps": []})


def test_aggregate_tables_are_read_with_the_file() -> None:
    table = {"name": "daily_steps", "kind": "sum", "field": "steps"}
    config = parse_config({"aggregate": [table]})
    assert config.aggregates == (table,)
    assert [d.name for d in config.definitions] == ["daily_steps"]
    # An unknown key in an [[aggregate]] fails when the file is read, as any other key does.
    with pytest.raises(ConfigError, match="unknown keys anything"):
        parse_config({"aggregate": [{"name": "daily_steps", "anything": 1}]})


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "`stream`"),
        ({"stream": "s", "format": "protobuf"}, "format 'protobuf' is not one of"),
        ({"stream": "s", "entity_id": 7}, "must be a string"),
        ({"stream": "s", "entity_id": "$.a..b"}, "empty segment"),
        ({"stream": "s", "format": "raw", "source": "x"}, "constant `event_type`"),
        (
            {"stream": "s", "format": "raw", "source": "x", "event_type": "y", "entity_id": "$.a"},
            "no fields to read",
        ),
        ({"stream": "arn:aws:kinesis:us-east-1:1:table/x"}, "not a Kinesis stream ARN"),
    ],
)
def test_bad_bindings_say_what_is_wrong(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"tap": [table]})


def test_a_stream_bound_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="bound twice"):
        parse_config({"tap": [{"stream": "s"}, {"stream": "arn:aws:kinesis:r:1:stream/s"}]})


def test_missing_or_broken_files(tmp_path: Path) -> None:
    assert load_config(None).taps == ()
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[[tap]\nstream=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


def test_a_confluent_binding_names_its_registry_url() -> None:
    doc = {
        "tap": [
            {"stream": "s", "format": "avro-confluent", "registry_url": "https://sr.example:8081"},
            {"stream": "g", "format": "avro-glue", "source": "shop"},
        ]
    }
    confluent, glue = parse_config(doc).taps
    assert confluent.registry_url == "https://sr.example:8081"
    assert confluent.to_json()["registry_url"] == "https://sr.example:8081"
    assert glue.format is Format.AVRO_GLUE and glue.registry_url is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"registry_password": "hunter2"}, "environment only: PIK_REGISTRY_USER"),
        ({"registry_token": "t"}, "PIK_REGISTRY_TOKEN"),
        ({"registry_url": "https://u:p@sr.example"}, "must not carry credentials"),
        ({"registry_url": "sr.example:8081"}, "is not an http(s):// URL"),
    ],
)
def test_registry_credentials_in_the_config_file_are_refused(
    table: dict[str, object], message: str
) -> None:
    doc = {"tap": [{"stream": "s", "format": "avro-confluent", **table}]}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config(doc)


def test_registry_url_is_for_confluent_framing_only() -> None:
    doc = {"tap": [{"stream": "s", "format": "json", "registry_url": "https://sr.example"}]}
    with pytest.raises(ConfigError, match="avro-confluent"):
        parse_config(doc)
