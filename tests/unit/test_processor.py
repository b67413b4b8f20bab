"""consumers/processor.py and pik/processing.py: definitions, messages, hashes, config."""

from __future__ import annotations

import json

import pytest

from consumers.processor import AggregateDefinition, input_hash, parse_message
from consumers.processor_loop import MAX_RETRY_DELAY_S, retry_delay
from infra.errors import ConfigError
from pik.config import definitions_from


def test_count_sum_min_max_skip_missing_and_non_numeric_fields() -> None:
    payloads = [{"steps": 3}, {"steps": 2.5}, {"steps": "7"}, {"steps": True}, {}]
    assert AggregateDefinition("n").compute(payloads) == 5
    assert AggregateDefinition("s", kind="sum", field="steps").compute(payloads) == 5.5
    assert AggregateDefinition("lo", kind="min", field="steps").compute(payloads) == 2.5
    assert AggregateDefinition("hi", kind="max", field="steps").compute(payloads) == 3
    assert AggregateDefinition("s", kind="sum", field="steps").compute([{}]) is None


def test_integer_sums_stay_exact() -> None:
    big = [{"amount": 2**60}, {"amount": 1}]
    assert AggregateDefinition("s", kind="sum", field="amount").compute(big) == 2**60 + 1


@pytest.mark.parametrize(
    "kwargs", [{"kind": "avg"}, {"kind": "sum"}, {"kind": "count", "field": "steps"}]
)
def test_bad_definitions_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        AggregateDefinition("x", **kwargs)


def test_definition_filters_by_source_and_type() -> None:
    d = AggregateDefinition("n", source="app", event_type="purchase")
    assert d.applies_to({"source": "app", "event_type": "purchase"})
    assert not d.applies_to({"source": "app", "event_type": "heartbeat"})
    assert not d.applies_to({"source": "web", "event_type": "purchase"})


def test_input_hash_ignores_order_but_not_membership_or_definition() -> None:
    d = AggregateDefinition("n")
    assert input_hash(d, ["b", "a"]) == input_hash(d, ["a", "b"])
    assert input_hash(d, ["a"]) != input_hash(d, ["a", "b"])
    assert input_hash(d, ["a"]) != input_hash(AggregateDefinition("m"), ["a"])


def test_parse_message_reads_the_replay_contract() -> None:
    body = json.dumps(
        {
            "replay_id": "r1",
            "event_id": "e1",
            "entity_id": "user_123",
            "source": "demo",
            "event_type": "heartbeat",
            "event_time": "2025-12-29T01:30:00+02:00",
            "status": "ACCEPTED",
            "archive": {"bucket": "b", "key": "k", "position": 3},
        }
    )
    m = parse_message("m1", body)
    assert (m.event_id, m.entity_id, m.day, m.replay_id) == ("e1", "user_123", "2025-12-28", "r1")
    assert (m.pointer.key, m.pointer.position) == ("k", 3)


@pytest.mark.parametrize("body", ["", "[]", "{}", '{"event_id": "e"}', "not json"])
def test_anything_else_is_not_a_replay_message(body: str) -> None:
    with pytest.raises(ValueError, match="not a replay message"):
        parse_message("m", body)


def test_retry_delay_grows_and_is_capped() -> None:
    assert [retry_delay(n, 5) for n in (1, 2, 3)] == [5, 10, 20]
    assert retry_delay(50, 5) == MAX_RETRY_DELAY_S
    assert retry_delay(3, 0) == 0


def test_config_definitions_default_and_errors() -> None:
    assert [d.name for d in definitions_from(())] == ["daily_event_count"]
    [steps] = definitions_from(({"name": "steps", "kind": "sum", "field": "steps"},))
    assert (steps.kind, steps.field) == ("sum", "steps")
    with pytest.raises(ConfigError, match="unknown keys colour"):
        definitions_from(({"name": "x", "colour": "red"},))
    with pytest.raises(ConfigError, match="need a field"):
        definitions_from(({"name": "x", "kind": "sum"},))
    with pytest.raises(ConfigError, match="unique"):
        definitions_from(({"name": "x"}, {"name": "x"}))
