"""What the index writes of an identity or occurrence item (infra.index_layout.stored) and what
its readers get back (restore): every attribute, exactly, and fewer bytes on the table."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infra.archive import ArchivePointer
from infra.capacity import item_size
from infra.index import Claim, Occurrence, claim_item, occurrence_item
from infra.index_layout import restore, restore_entry, stored
from infra.keys import archive_key
from schemas.codec import Provenance
from schemas.envelope import format_time

AT = datetime(2026, 12, 8, 10, 59, 58, 123456, tzinfo=UTC)


def _claim(
    *, source: str = "checkout", file_at: datetime = AT, ingest: datetime = AT
) -> dict[str, Any]:
    key = archive_key(
        quarantine=False,
        source=source,
        event_type="order_paid",
        ingest_time=file_at,
        batch="stream-shardId-000000000000",
        first="102.0",
        last="1561.0",
    )
    claim = Claim(
        event_id="ab" * 32,
        occurrence_id="kinesis:stream:shardId-000000000000:102:0",
        source=source,
        event_type="order_paid",
        entity_id="cust#0040",  # a separator in the entity: the shard is the last part
        event_time=AT - timedelta(seconds=3),
        ingest_time=ingest,
        lag_ms=3000,
        provenance=Provenance("kinesis:stream:shardId-000000000000:102:0", "kinesis"),
        payload_bytes=245,
        pointer=ArchivePointer("raw-bucket", key, 7),
        idempotency_key="k-1",
    )
    return claim_item(claim)


def _serialised_size(item: dict[str, Any]) -> int:
    from boto3.dynamodb.types import TypeSerializer

    ser = TypeSerializer()
    return item_size({k: ser.serialize(v) for k, v in item.items()})


@pytest.mark.parametrize(
    ("file_at", "ingest", "form"),
    [
        (AT, AT, "name"),  # the file's hour is the claim's ingest hour: only the file name
        (AT, AT + timedelta(seconds=3), "ingest_date="),  # the ingest crossed into 11:00
    ],
)
def test_an_identity_item_is_written_without_what_its_keys_say(
    file_at: datetime, ingest: datetime, form: str
) -> None:
    item = _claim(file_at=file_at, ingest=ingest)
    written = stored(item)
    assert not {"status", "event_time", "entity_id"} & set(written)
    assert not written["archive_key"].startswith("raw/")
    assert ("/" not in written["archive_key"]) == (form == "name")
    assert written["archive_key"].startswith("ingest_date=") == (form == "ingest_date=")
    assert _serialised_size(written) <= _serialised_size(item) - 100
    assert restore(copy.deepcopy(written)) == item
    assert format_time(AT - timedelta(seconds=3)) == restore(written)["event_time"]


def test_a_name_that_needs_escaping_restores_exactly() -> None:
    item = _claim(source="../checkout eu")
    written = stored(item)
    assert restore(copy.deepcopy(written)) == item
    assert written["archive_key"] != item["archive_key"]


def test_an_occurrence_item_is_written_without_its_id_twice() -> None:
    occurrence = Occurrence(
        event_id="cd" * 32,
        status="DUPLICATE",
        ingest_time=AT,
        provenance=Provenance(occurrence_id="http:req:abc:0", origin="http", request_id="req"),
        pointer=ArchivePointer("raw-bucket", "raw/source=s/event_type=t/x.avro", 3),
        source="s",
        event_type="t",
    )
    item = occurrence_item(occurrence)
    written = stored(item)
    assert "occurrence_id" not in written and "occurrence_id" not in written["provenance"]
    assert written["item"] == "occ#http:req:abc:0"
    assert restore(copy.deepcopy(written)) == item
    assert next(iter(restore(copy.deepcopy(written))["provenance"])) == "occurrence_id"


def test_items_of_older_layouts_and_projections_read_as_they_are() -> None:
    item = _claim()
    assert restore(copy.deepcopy(item)) == item  # written whole: nothing to put back
    # a projection without source and type: the short key stays short, nothing is made up
    entry = {"event_id": item["event_id"], "item": "event", "archive_key": "x.avro"}
    assert restore_entry(dict(entry))["archive_key"] == "x.avro"
    other = {"event_id": "e", "item": "cat#x", "n": 1}
    assert restore(dict(other)) == other


def test_an_item_restore_would_not_give_back_is_written_whole() -> None:
    item = _claim()
    item["status"] = "SOMETHING_ELSE"  # not what restore would say
    assert stored(item) == item
