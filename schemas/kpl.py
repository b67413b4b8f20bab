"""KPL aggregation (aws-kinesis-agg 1.2.3), wrapped so that its habits cannot lose data.

An aggregated record is ``F3 89 9A C2`` + a protobuf ``AggregatedRecord`` + the MD5 of that
protobuf. The library's own de-aggregation has habits this kit cannot live with, so this module
stands between it and the tap:

* **A corrupt aggregate passes through or is cut short.** On an MD5 mismatch or a protobuf error
  the library yields the whole record as if it were a plain one (its bytes then fail later as
  "not JSON", with no word about the KPL); on an error half-way through (a partition key index
  out of range) it prints to stderr and drops the rest. Here every check is made *before* any
  user record is returned: a record that starts with the magic is either de-aggregated whole or
  returned as ``CorruptAggregate`` with a reason, to be quarantined whole with its raw bytes.
* **Base64.** Its generator re-encodes every sub-record's data in base64 (even in ``Boto3``
  mode, where plain records pass through as bytes), and ``deaggregate_records`` takes only
  Lambda-shaped records. Here every user record is plain ``bytes``, whatever the input shape.
* **Import side effects.** Importing ``aws_kinesis_agg.aggregator`` or ``.deaggregator`` puts
  the library's own folder first on ``sys.path`` (its generated ``messages_pb2`` does a top-level
  ``import config_pb2``), and it imports ``six`` without declaring it (the kit declares it).
  ``load_library`` imports it once and puts ``sys.path`` back as it was.

The protobuf is parsed with the library's own generated ``messages_pb2`` (the KPL wire schema),
so the records seen here are exactly those the library would produce.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from schemas.frozen import maker

KPL_MAGIC = b"\xf3\x89\x9a\xc2"
DIGEST_SIZE = 16  # MD5
_import_lock = threading.Lock()
_modules: dict[str, ModuleType] = {}


def load_library() -> dict[str, ModuleType]:
    """``aggregator``, ``deaggregator`` and ``messages_pb2`` of aws-kinesis-agg, imported once
    with ``sys.path`` restored afterwards."""
    with _import_lock:
        if not _modules:
            saved = list(sys.path)
            try:
                import aws_kinesis_agg.aggregator as aggregator
                import aws_kinesis_agg.deaggregator as deaggregator
                from aws_kinesis_agg import messages_pb2
            finally:
                sys.path[:] = saved
            _modules.update(
                aggregator=aggregator, deaggregator=deaggregator, messages_pb2=messages_pb2
            )
        return _modules


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One record as its producer put it: inside an aggregate, or a plain record itself."""

    sub_sequence_number: int
    partition_key: str
    data: bytes
    explicit_hash_key: str | None = None


_new_user_record = maker(UserRecord)  # as UserRecord(...), faster (schemas/frozen.py)


@dataclass(frozen=True, slots=True)
class CorruptAggregate:
    """A record that starts with the KPL magic but cannot be de-aggregated whole."""

    detail: str


def is_aggregated(data: bytes) -> bool:
    return data[:4] == KPL_MAGIC


def deaggregate(data: bytes, partition_key: str) -> list[UserRecord] | CorruptAggregate:
    """The user records of one Kinesis record, in order, numbered by sub-sequence number.

    A plain record is its own single user record (sub-sequence number 0). Never raises.
    """
    if not is_aggregated(data):
        return [UserRecord(0, partition_key, data)]
    body = data[len(KPL_MAGIC) :]
    if len(body) <= DIGEST_SIZE:
        return CorruptAggregate(f"KPL aggregate truncated: {len(data)} bytes in all")
    message, digest = body[:-DIGEST_SIZE], body[-DIGEST_SIZE:]
    if hashlib.md5(message).digest() != digest:
        return CorruptAggregate("KPL aggregate MD5 mismatch (truncated or altered)")
    aggregated = _parse(message)
    if isinstance(aggregated, CorruptAggregate):
        return aggregated
    keys = list(aggregated.partition_key_table)
    hash_keys = list(aggregated.explicit_hash_key_table)
    complete = aggregated.IsInitialized()  # every record has its required fields: one C check
    out: list[UserRecord] = []
    for n, record in enumerate(aggregated.records):
        if not complete and (
            not record.HasField("data") or not record.HasField("partition_key_index")
        ):
            return CorruptAggregate(f"KPL aggregate: user record {n} lacks data or partition key")
        index = record.partition_key_index
        if index >= len(keys):
            return CorruptAggregate(
                f"KPL aggregate: user record {n} names partition key {index} of {len(keys)}"
            )
        hash_key = None
        if record.HasField("explicit_hash_key_index"):
            if record.explicit_hash_key_index >= len(hash_keys):
                return CorruptAggregate(
                    f"KPL aggregate: user record {n} names explicit hash key "
                    f"{record.explicit_hash_key_index} of {len(hash_keys)}"
                )
            hash_key = hash_keys[record.explicit_hash_key_index]
        out.append(_new_user_record(n, keys[index], record.data, hash_key))
    if not out:
        return CorruptAggregate("KPL aggregate holds no user records")
    return out


def _parse(message: bytes) -> Any:
    messages_pb2 = load_library()["messages_pb2"]
    aggregated = messages_pb2.AggregatedRecord()
    try:
        aggregated.ParseFromString(message)
    except Exception as exc:  # protobuf's DecodeError, or a RuntimeError from upb on bad input
        return CorruptAggregate(f"KPL aggregate is not a valid protobuf: {exc}"[:300])
    return aggregated


@dataclass(frozen=True, slots=True)
class Aggregate:
    """One KPL aggregated record, ready for PutRecords."""

    partition_key: str
    explicit_hash_key: str | None
    data: bytes
    user_records: int


def aggregate(records: list[tuple[str, bytes]], max_bytes: int | None = None) -> list[Aggregate]:
    """``(partition_key, data)`` pairs → KPL aggregated records, made by the library's own
    ``RecordAggregator``, in order, each at most ``max_bytes`` (1 MiB by default).

    An aggregate's partition and explicit hash keys are those of its first user record (the
    library's choice), so it lands on that record's shard.
    """
    aggregator_module = load_library()["aggregator"]
    kwargs = {} if max_bytes is None else {"max_size": max_bytes}
    agg = aggregator_module.RecordAggregator(**kwargs)
    out: list[Aggregate] = []

    def take(record: Any) -> None:
        if record is not None and record.get_num_user_records():
            key, hash_key, data = record.get_contents()
            out.append(Aggregate(key, hash_key or None, data, record.get_num_user_records()))

    for key, data in records:
        take(agg.add_user_record(key, data))
    take(agg.clear_and_get())
    return out
