"""Avro binary encoding of archive records, spelled out for the one fixed archive schema.

fastavro's generic writer picks each union's branch by validating the value against every branch
in turn, which for the archive schema (sixteen ``["null", ...]`` unions) is most of the tap's
CPU. The schema is fixed, so its encoding is written out here, field by field, from the Avro
specification:

* ``long``: zig-zag, then a varint (7 bits a byte, low group first);
* ``string`` / ``bytes``: the byte length as a ``long``, then the (UTF-8) bytes;
* ``["null", T]``: the branch index as a ``long`` (``00`` for null, ``02`` for ``T``), then the
  value;
* ``timestamp-micros``: a ``long`` of microseconds since the epoch.

``LAYOUT`` is what this encoder assumes of ``archive_record.avsc``; when the schema says
otherwise ``matches`` is false and the codec keeps to fastavro. A record holding anything but the
plain types (``str``, ``bytes``, ``int``, aware ``datetime``, ``None``) is encoded by fastavro,
so an odd value is written, or refused, exactly as before. Equality with
``fastavro.schemaless_writer`` is a property test (``tests/unit/test_archive_encoder.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from schemas.errors import KitError

if TYPE_CHECKING:
    from schemas.records import ArchiveRecord

STRING, OPTIONAL_STRING, OPTIONAL_LONG, BYTES = "string", "?string", "?long", "bytes"
TIMESTAMP, OPTIONAL_TIMESTAMP = "timestamp", "?timestamp"

# (field, kind) in schema order: the encoding below writes exactly these, in this order.
LAYOUT: tuple[tuple[str, str], ...] = (
    ("event_id", STRING),
    ("status", STRING),
    ("reason", OPTIONAL_STRING),
    ("detail", OPTIONAL_STRING),
    ("source", OPTIONAL_STRING),
    ("event_type", OPTIONAL_STRING),
    ("entity_id", OPTIONAL_STRING),
    ("event_time", OPTIONAL_TIMESTAMP),
    ("idempotency_key", OPTIONAL_STRING),
    ("ingest_time", TIMESTAMP),
    ("lag_ms", OPTIONAL_LONG),
    ("payload", OPTIONAL_STRING),
    ("raw", BYTES),
    ("schema_fingerprint", OPTIONAL_STRING),
    ("occurrence_id", STRING),
    ("origin", STRING),
    ("request_id", OPTIONAL_STRING),
    ("stream", OPTIONAL_STRING),
    ("shard_id", OPTIONAL_STRING),
    ("sequence_number", OPTIONAL_STRING),
    ("sub_sequence_number", OPTIONAL_LONG),
    ("partition_key", OPTIONAL_STRING),
    ("arrival_time", OPTIONAL_TIMESTAMP),
    ("schema_ref", OPTIONAL_STRING),
)

_NULL = b"\x00"  # union branch 0
_SOME = b"\x02"  # union branch 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_SMALL = [bytes([n]) for n in range(128)]  # varints of one byte
_SIZED = 1 << 13  # lengths below this have their ``long`` encoding in a table
_MEMO_ENTRIES = 4096  # remembered values per memo, at most


class Unplain(KitError):
    """A value outside the plain types: the record is left to fastavro."""


def kind_of(field: dict[str, Any]) -> str | None:
    """A schema field (as JSON) → its ``LAYOUT`` kind, or None for a type this encoder lacks."""
    kind, prefix = field["type"], ""
    if isinstance(kind, list) and len(kind) == 2 and kind[0] == "null":
        kind, prefix = kind[1], "?"
    if kind == {"type": "long", "logicalType": "timestamp-micros"}:
        kind = TIMESTAMP
    return prefix + kind if isinstance(kind, str) else None


def matches(schema: dict[str, Any]) -> bool:
    """Whether ``schema`` (the archive record schema, as JSON) is the one ``LAYOUT`` encodes."""
    fields = schema.get("fields", [])
    return schema.get("type") == "record" and (
        tuple((f["name"], kind_of(f)) for f in fields) == LAYOUT
    )


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SIZE = [_varint(n << 1) for n in range(_SIZED)]  # the ``long`` of each small n >= 0
_SOME_SIZE = [_SOME + size for size in _SIZE]  # the same, as the ``T`` branch of ``["null", T]``


def long_bytes(value: int) -> bytes:
    """An Avro ``long``: zig-zag, then little-endian base-128 groups."""
    if type(value) is not int:
        raise Unplain(value)
    if 0 <= value < _SIZED:
        return _SIZE[value]
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise Unplain(value)
    return _varint((value << 1) ^ (value >> 63))


def _micros(value: Any) -> int:
    """A ``timestamp-micros`` value: an aware datetime (as fastavro converts it) or an int."""
    if type(value) is datetime and value.tzinfo is not None and value.utcoffset() is not None:
        return (value - _EPOCH) // _MICROSECOND
    if type(value) is int:
        return value
    raise Unplain(value)


def _sized(data: bytes) -> bytes:
    """``bytes`` / ``string``: the length as a ``long``, then the bytes."""
    return (_SIZE[len(data)] if len(data) < _SIZED else long_bytes(len(data))) + data


class RecordEncoder:
    """Encodes the records of one file, remembering what repeats within it.

    ``encode`` is written out field by field in one function: it runs for every archived record,
    and in CPython a call costs more than most fields' encodings. Texts that repeat within a file
    (status, source, stream, shard, partition key...) and times (ingest, arrival) are encoded once
    per file; so are the high varint groups of event times, which change every ~2 minutes.
    """

    def __init__(self) -> None:
        self._texts: dict[Any, bytes] = {}  # text → its ``string`` encoding
        self._options: dict[Any, bytes] = {None: _NULL}  # text → its ``["null", "string"]`` one
        self._times: dict[Any, bytes] = {}  # time → its ``timestamp-micros`` encoding
        self._stamps: dict[Any, bytes] = {None: _NULL}  # time → its ``["null", timestamp]`` one
        self._high: dict[int, bytes] = {}  # zig-zag value >> 28 → its varint

    def encode(self, record: ArchiveRecord) -> bytes:
        """The record's Avro binary encoding; ``Unplain`` when a value is not a plain one."""
        try:
            return self._encode(record)
        except Exception as exc:  # .encode() of a non-str, an unhashable value, a naive time...
            raise Unplain(exc) from exc

    def _encode(self, r: ArchiveRecord) -> bytes:
        # Every helper is inlined: ``size[n]`` is the length prefix of a ``string`` of n bytes,
        # from the table below ``_SIZED`` bytes, else worked out (``long_bytes``).
        p = r.provenance
        texts, options, stamps, size = self._texts, self._options, self._stamps, _SIZE
        some_size = _SOME_SIZE
        raw, event_time, detail, request = r.raw, r.event_time, r.detail, p.request_id
        lag, sub, key, payload = r.lag_ms, p.sub_sequence_number, r.idempotency_key, r.payload
        reason, fingerprint, ref = r.reason, r.schema_fingerprint, r.schema_ref
        if type(raw) is not bytes:
            raise Unplain(raw)
        event_id = r.event_id.encode()
        occurrence = p.occurrence_id.encode()
        sequence = p.sequence_number
        # ``["null", "string"]`` values and ``["null", "long"]`` small numbers: table lookups.
        key_bytes = b"" if key is None else key.encode()
        n = len(key_bytes)
        key_head = _NULL if key is None else some_size[n] if n < _SIZED else _SOME + long_bytes(n)
        sequence_bytes = b"" if sequence is None else sequence.encode()
        n = len(sequence_bytes)
        sequence_head = (
            _NULL if sequence is None else some_size[n] if n < _SIZED else _SOME + long_bytes(n)
        )
        if type(lag) is int and 0 <= lag < _SIZED:
            lag_bytes = some_size[lag]
        else:
            lag_bytes = _NULL if lag is None else _SOME + long_bytes(lag)
        if type(sub) is int and 0 <= sub < _SIZED:
            sub_bytes = some_size[sub]
        else:
            sub_bytes = _NULL if sub is None else _SOME + long_bytes(sub)
        if payload is None:
            payload_head, payload_body = _NULL, b""
        else:
            payload_body = payload.encode()
            n = len(payload_body)
            payload_head = some_size[n] if n < _SIZED else _SOME + long_bytes(n)
        n = len(raw)
        raw_head = size[n] if n < _SIZED else long_bytes(n)
        # An event time as the envelope makes it, past 1970-01-02: ``_event_time`` inlined.
        if type(event_time) is datetime and event_time.tzinfo is UTC:
            n = ((event_time - _EPOCH) // _MICROSECOND) << 1  # zig-zag of a positive long
        else:
            n = 0
        if 1 << 28 <= n <= _LONG_MAX:
            high = n >> 28
            time_head = _SOME
            time_low = (  # the low four 7-bit groups, each with its continuation bit
                (n & 0x7F)
                | (n & 0x3F80) << 1
                | (n & 0x1FC000) << 2
                | (n & 0xFE00000) << 3
                | 0x80808080
            ).to_bytes(4, "little")
            time_high = self._high.get(high) or _remember(self._high, high, _varint(high))
        else:
            time_head = _NULL if event_time is None else self._event_time(event_time)
            time_low = time_high = b""
        return b"".join(
            (
                size[n] if (n := len(event_id)) < _SIZED else long_bytes(n),
                event_id,
                texts.get(r.status) or self._text(r.status),
                _NULL if reason is None else options.get(reason) or self._option(reason),
                _NULL if detail is None else _free(detail),
                options.get(r.source) or self._option(r.source),
                options.get(r.event_type) or self._option(r.event_type),
                options.get(r.entity_id) or self._option(r.entity_id),
                time_head,
                time_low,
                time_high,
                key_head,
                key_bytes,
                self._times.get(r.ingest_time) or self._time(r.ingest_time),
                lag_bytes,
                payload_head,
                payload_body,
                raw_head,
                raw,
                _NULL
                if fingerprint is None
                else options.get(fingerprint) or self._option(fingerprint),
                size[n] if (n := len(occurrence)) < _SIZED else long_bytes(n),
                occurrence,
                texts.get(p.origin) or self._text(p.origin),
                _NULL if request is None else _free(request),
                options.get(p.stream) or self._option(p.stream),
                options.get(p.shard_id) or self._option(p.shard_id),
                sequence_head,
                sequence_bytes,
                sub_bytes,
                options.get(p.partition_key) or self._option(p.partition_key),
                stamps.get(p.arrival_time) or self._stamp(p.arrival_time),
                _NULL if ref is None else options.get(ref) or self._option(ref),
            )
        )

    # -- first sight of a value ----------------------------------------------------------------
    def _text(self, value: Any) -> bytes:
        if type(value) is not str:
            raise Unplain(value)
        return _remember(self._texts, value, _sized(value.encode()))

    def _option(self, value: Any) -> bytes:
        if type(value) is not str:
            raise Unplain(value)
        return _remember(self._options, value, _SOME + _sized(value.encode()))

    def _time(self, value: Any) -> bytes:
        return _remember(self._times, value, long_bytes(_micros(value)))

    def _stamp(self, value: Any) -> bytes:
        return _remember(self._stamps, value, _SOME + long_bytes(_micros(value)))

    def _event_time(self, value: Any) -> bytes:
        """Event times seldom repeat, but their high varint groups do: only the low four groups
        (28 bits, ~2 minutes) are worked out for each."""
        if type(value) is datetime and value.tzinfo is UTC:  # as the envelope makes them
            micros = (value - _EPOCH) // _MICROSECOND
        else:
            micros = _micros(value)
            if not _LONG_MIN <= micros <= _LONG_MAX:
                raise Unplain(value)
        n = (micros << 1) ^ (micros >> 63)
        if n < 1 << 28:
            return _SOME + _varint(n)
        high = self._high.get(n >> 28) or _remember(self._high, n >> 28, _varint(n >> 28))
        # The low four 7-bit groups, each with its continuation bit, as one little-endian int.
        low = (
            (n & 0x7F) | (n & 0x3F80) << 1 | (n & 0x1FC000) << 2 | (n & 0xFE00000) << 3 | 0x80808080
        )
        return _SOME + low.to_bytes(4, "little") + high


def _free(value: str | None) -> bytes:
    """A ``["null", "string"]`` text that seldom repeats (so not remembered)."""
    return _NULL if value is None else _SOME + _sized(value.encode())


def _remember(memo: dict[Any, bytes], value: Any, encoded: bytes) -> bytes:
    """Remember ``value``'s encoding; a memo past its bound starts again (a file of distinct
    values must not grow it without end)."""
    if len(memo) >= _MEMO_ENTRIES:
        null = memo.get(None)
        memo.clear()
        if null is not None:
            memo[None] = null
    memo[value] = encoded
    return encoded
