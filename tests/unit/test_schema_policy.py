"""Schema policy from the config file: [sources.<name>] schema_policy and [schemas] registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.errors import ConfigError
from pik.config import load_config
from pik.schema_policy import (
    Policy,
    SchemaPolicy,
    parse_schema_policy,
)


def test_defaults_without_a_file() -> None:
    policy = load_config(None).schemas
    assert policy == SchemaPolicy()
    assert policy.policy("anything") is Policy.ALLOW_UNKNOWN
    assert policy.required_sources == frozenset()
    assert policy.registry is None


def test_file_with_sources_and_registry(tmp_path: Path) -> None:
    config = tmp_path / "pik.toml"
    config.write_text(
        """
[[tap]]
stream = "orders"

[schemas]
registry = "my-registry"

[sources.orders-service]
schema_policy = "require"

[sources.demo]
schema_policy = "allow-unknown"
"""
    )
    policy = load_config(config).schemas
    assert policy.policy("orders-service") is Policy.REQUIRE
    assert policy.policy("demo") is Policy.ALLOW_UNKNOWN
    assert policy.policy("other") is Policy.ALLOW_UNKNOWN
    assert policy.required_sources == frozenset({"orders-service"})
    assert policy.registry == tmp_path / "my-registry"  # relative to the config file


def test_absolute_registry_path_is_kept(tmp_path: Path) -> None:
    policy = parse_schema_policy({"schemas": {"registry": str(tmp_path)}}, base=Path("/elsewhere"))
    assert policy.registry == tmp_path


def test_validator_uses_the_registry_folder_and_required_sources(tmp_path: Path) -> None:
    (tmp_path / "shop" / "order").mkdir(parents=True)
    (tmp_path / "shop" / "order" / "v1.avsc").write_text(
        '{"type": "record", "name": "O", "fields": [{"name": "id", "type": "string"}]}'
    )
    policy = SchemaPolicy(sources={"shop": Policy.REQUIRE}, registry=tmp_path)
    validator = policy.validator()
    assert validator.required_sources == frozenset({"shop"})
    assert len(policy.load_registry()) == 1


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"sources": {"a": {"schema_policy": "maybe"}}}, "schema_policy 'maybe' is not one of"),
        ({"sources": {"a": {"policy": "require"}}}, r"\[sources.a\]: unknown key\(s\) policy"),
        ({"sources": {"a": 1}}, r"\[sources.a\] is not a table"),
        ({"sources": []}, "must be a table"),
        ({"schemas": {"registry": 3}}, "registry must be a folder path"),
        ({"schemas": {"folder": "x"}}, r"unknown key\(s\) folder"),
    ],
)
def test_bad_tables_fail_loudly(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_schema_policy(doc)


def test_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[sources\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
