"""The envelope's limits are declared once (schemas/envelope.py): the model, the plain paths and
the tap's generated mapping agree at every limit and one past it, so a limit changed in one
place, or a fast path that hard-codes its own, fails here."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from consumers.tap.binding import binding_from_table
from consumers.tap.decode import RecordDecoder
from consumers.tap.fastmap import fast_mapper
from schemas.envelope import (
    DEFAULT_MAX_EVENT_BYTES,
    MAX_JSON_DEPTH,
    TEXT_LIMITS,
    Event,
    Reason,
    Rejection,
    decode_json,
    parse_body,
    parse_event,
    plain_event,
)
from tests.unit.test_envelope_fast import reference_decode_json, reference_parse_event, same_outcome

ARRIVAL = datetime(2025, 12, 29, 0, 30, tzinfo=UTC)
WHEN = datetime(2025, 12, 28, 10, 0, tzinfo=UTC)
# Every text field taken from the record, so the generated mapping checks each limit itself.
BINDING = binding_from_table(
    {
        "stream": "s",
        "source": "$.source",
        "event_type": "$.event_type",
        "entity_id": "$.entity_id",
        "event_time": "$.event_time",
        "idempotency_key": "$.idempotency_key",
    }
)
LENGTHS = [(field, limit + extra) for field, limit in TEXT_LIMITS.items() for extra in (0, 1)]


def event_with(field: str, text: str) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "source": "s",
        "event_type": "t",
        "entity_id": "e",
        "event_time": "2025-12-28T10:00:00Z",
        "payload": {"n": 1},
        "idempotency_key": "k",
    }
    obj[field] = text
    return obj


def test_the_declaration_names_every_text_field_of_the_model() -> None:
    texts = {name for name, info in Event.model_fields.items() if info.annotation is not dict}
    assert set(TEXT_LIMITS) == texts - {"event_time", "payload"}


@pytest.mark.parametrize(("field", "length"), LENGTHS)
@pytest.mark.parametrize("char", ["x", "é", "😀"])  # limits count characters, not bytes
def test_every_path_agrees_at_the_limit_and_past_it(field: str, length: int, char: str) -> None:
    text = char * length
    obj = event_with(field, text)
    reference = reference_parse_event(obj)
    fits = length <= TEXT_LIMITS[field]
    assert isinstance(reference, Event) is fits, reference
    if not fits:
        assert isinstance(reference, Rejection) and field in reference.detail
    same_outcome(parse_event(obj), reference)

    texts = {k: v for k, v in obj.items() if k not in ("event_time", "payload")}
    plain = plain_event(texts, WHEN, obj["payload"])
    if plain is not None:  # None: the model decides, as above
        assert fits
        same_outcome(plain, reference)

    fast = fast_mapper(BINDING)
    assert fast is not None
    mapped = fast(obj, "pk", ARRIVAL)
    general = RecordDecoder(BINDING)._mapped(json.dumps(obj).encode(), obj, None, "pk", ARRIVAL)
    assert isinstance(general, Event) is fits, general
    if mapped is not None:  # None: the general mapping decides
        assert fits
        same_outcome(mapped, general)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1])
def test_the_depth_limit_is_one_rule(depth: int) -> None:
    raw = ("[" * (depth - 1) + "{}" + "]" * (depth - 1)).encode()
    fast, reference = decode_json(raw), reference_decode_json(raw)
    assert isinstance(reference, Rejection) is (depth > MAX_JSON_DEPTH)
    if isinstance(reference, Rejection):
        assert reference.reason is Reason.TOO_DEEP and fast == reference
    else:
        assert fast == reference


@pytest.mark.parametrize("extra", [0, 1])
def test_the_size_limit_is_one_rule(extra: int) -> None:
    head = json.dumps(event_with("source", "s"))[:-1] + ', "pad": "'
    raw = (head + "x" * (DEFAULT_MAX_EVENT_BYTES - len(head) - 2 + extra) + '"}').encode()
    assert len(raw) == DEFAULT_MAX_EVENT_BYTES + extra
    parsed = parse_body(raw)
    too_large = isinstance(parsed, Rejection) and parsed.reason is Reason.TOO_LARGE
    assert too_large is (extra == 1)
