"""schemas/kpl.py: KPL aggregates from aws-kinesis-agg's own aggregator, and corrupt ones
quarantined whole instead of passed through or cut short as the library would."""

from __future__ import annotations

import hashlib
import sys

import pytest

from schemas.kpl import (
    KPL_MAGIC,
    CorruptAggregate,
    UserRecord,
    aggregate,
    deaggregate,
    load_library,
)

USER_RECORDS = [(f"user_{i % 7}", f'{{"n": {i}}}'.encode()) for i in range(300)]


def _framed(message: bytes) -> bytes:
    return KPL_MAGIC + message + hashlib.md5(message).digest()


def test_library_import_leaves_sys_path_alone() -> None:
    before = list(sys.path)
    load_library()
    assert sys.path == before


def test_round_trip_keeps_order_keys_and_sub_sequence_numbers() -> None:
    (agg,) = aggregate(USER_RECORDS)
    assert agg.user_records == 300 and agg.partition_key == "user_0"
    users = deaggregate(agg.data, "outer-key")
    assert isinstance(users, list)
    assert [(u.partition_key, u.data) for u in users] == USER_RECORDS
    assert [u.sub_sequence_number for u in users] == list(range(300))
    assert all(isinstance(u.data, bytes) for u in users)  # never base64


def test_aggregates_are_cut_at_the_size_limit() -> None:
    aggs = aggregate(USER_RECORDS, max_bytes=2_000)
    assert len(aggs) > 1 and all(len(a.data) <= 2_000 for a in aggs)
    flat: list[tuple[str, bytes]] = []
    for agg in aggs:
        users = deaggregate(agg.data, agg.partition_key)
        assert isinstance(users, list)
        flat.extend((u.partition_key, u.data) for u in users)
    assert flat == USER_RECORDS


def test_a_plain_record_is_its_own_user_record() -> None:
    assert deaggregate(b'{"a": 1}', "k") == [UserRecord(0, "k", b'{"a": 1}')]
    assert deaggregate(b"", "k") == [UserRecord(0, "k", b"")]


def _corruptions() -> dict[str, bytes]:
    (agg,) = aggregate(USER_RECORDS[:10])
    flipped = bytearray(agg.data)
    flipped[20] ^= 0xFF
    bad_index = b"\x0a\x01k\x1a\x04\x08\x05\x1a\x00"  # one key, a record naming key 5
    no_data = b"\x0a\x01k\x1a\x02\x08\x00"
    return {
        "magic only": KPL_MAGIC,
        "truncated": agg.data[: len(agg.data) // 2],
        "md5 mismatch": bytes(flipped),
        "bad protobuf": _framed(b"\xff\xff\xff\xff"),
        "index out of range": _framed(bad_index),
        "record without data": _framed(no_data),
        "no records": _framed(b"\x0a\x01k"),
    }


@pytest.mark.parametrize("name", list(_corruptions()))
def test_corrupt_aggregates_are_refused_whole(name: str) -> None:
    result = deaggregate(_corruptions()[name], "k")
    assert isinstance(result, CorruptAggregate), name
    assert result.detail.startswith("KPL aggregate")


def test_the_library_itself_would_lose_data_here() -> None:
    """Why the wrapper exists: the library passes a bad-MD5 aggregate through as a plain record
    and drops the rest of an aggregate whose key index is out of range."""
    deaggregator = load_library()["deaggregator"]
    corrupt = _corruptions()
    record = {"SequenceNumber": "1", "PartitionKey": "k", "ApproximateArrivalTimestamp": 0}
    passed = list(
        deaggregator.iter_deaggregate_records(
            [{**record, "Data": corrupt["md5 mismatch"]}], data_format="Boto3"
        )
    )
    assert passed[0]["kinesis"]["data"] == corrupt["md5 mismatch"]  # "not aggregated"
