"""The remote registry cache (schemas/remote.py): each key is looked up once, hits cost no
call, an unknown key is asked again only after a while, and a registry that cannot answer
raises instead of deciding the record."""

from __future__ import annotations

import json

import pytest

from schemas.registry import SchemaRegistry
from schemas.remote import UNKNOWN_RECHECK_S, RemoteSchema, RemoteSchemas

SCHEMA = {
    "type": "record",
    "name": "Shipment",
    "namespace": "shipping",
    "fields": [{"name": "shipment_id", "type": "string"}],
}


class Source:
    def __init__(self, answers: dict[int, RemoteSchema]) -> None:
        self.answers = answers
        self.calls: list[int] = []
        self.down = False

    def lookup(self, key: int) -> RemoteSchema | None:
        self.calls.append(key)
        if self.down:
            raise ConnectionError("registry down")
        return self.answers.get(key)


def remote(definition: dict[str, object] | str = SCHEMA, **kw: object) -> RemoteSchema:
    text = definition if isinstance(definition, str) else json.dumps(definition)
    return RemoteSchema(definition=text, ref="confluent schema id 7 at mock://t", **kw)  # type: ignore[arg-type]


def test_a_key_is_looked_up_once_and_then_served_from_the_cache() -> None:
    source = Source({7: remote()})
    cache: RemoteSchemas[int] = RemoteSchemas(source)
    first = cache.get(7)
    assert first is not None and all(cache.get(7) is first for _ in range(100))
    assert source.calls == [7]
    assert (first.source, first.event_type, first.name) == (
        "shipping",
        "Shipment",
        "confluent schema id 7 at mock://t",
    )


def test_the_folders_entries_answer_without_a_lookup() -> None:
    folder = SchemaRegistry()
    entry = folder.register("shipping", "shipped", 1, SCHEMA, schema_id=1)
    source = Source({})
    cache: RemoteSchemas[int] = RemoteSchemas(source, [(1, entry)])
    assert cache.get(1) is entry and source.calls == []


def test_an_unknown_key_is_asked_again_only_after_the_recheck_time() -> None:
    now = [0.0]
    source = Source({})
    cache: RemoteSchemas[int] = RemoteSchemas(source, monotonic=lambda: now[0])
    assert cache.get(9) is None and cache.get(9) is None
    assert source.calls == [9] and "does not know" in cache.why(9)
    source.answers[9] = remote()  # the producer registered it meanwhile
    now[0] = UNKNOWN_RECHECK_S + 1
    assert cache.get(9) is not None and source.calls == [9, 9]


def test_a_schema_that_is_not_avro_is_unknown_with_the_reason() -> None:
    source = Source({3: remote('{"type": "object"}', data_format="JSON")})
    cache: RemoteSchemas[int] = RemoteSchemas(source)
    assert cache.get(3) is None
    assert "JSON schema, not Avro" in cache.why(3)


def test_a_registry_that_cannot_answer_raises_and_is_asked_again() -> None:
    source = Source({7: remote()})
    source.down = True
    cache: RemoteSchemas[int] = RemoteSchemas(source)
    with pytest.raises(ConnectionError):
        cache.get(7)
    source.down = False
    assert cache.get(7) is not None and source.calls == [7, 7]
