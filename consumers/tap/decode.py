"""Stream records → ``Submission``s for the ingest sink, by a binding. Never raises.

Each Kinesis record is first de-aggregated (KPL) whatever the format; each user record is then
decoded by the binding's format and its envelope fields are resolved (a ``$.path``, a constant,
or the record's metadata). Anything that does not fit becomes a ``Rejection`` with a reason and
the exact raw bytes; a corrupt KPL aggregate becomes one rejection holding the whole record.
"""

from __future__ import annotations

import base64
import hashlib
import io
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import fastavro

from consumers.ingest import Submission
from consumers.tap.binding import FieldSpec, Format, TapBinding
from consumers.tap.fastmap import fast_mapper
from infra.kinesis import StreamRecord
from schemas.codec import new_provenance
from schemas.envelope import (
    DEFAULT_MAX_EVENT_BYTES,
    MAX_EVENT_TYPE_LENGTH,
    MAX_SOURCE_LENGTH,
    Event,
    Reason,
    Rejection,
    decode_json,
    format_time,
    parse_event,
    parse_time,
    plain_event,
)
from schemas.frozen import maker
from schemas.kpl import CorruptAggregate, deaggregate, is_aggregated
from schemas.registry import SchemaEntry, SchemaRegistry
from schemas.remote import RemoteSchemas

ORIGIN = "kinesis"
CONFLUENT_MAGIC = 0x00
CONFLUENT_HEADER_BYTES = 5
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
SINGLE_OBJECT_HEADER_BYTES = 10
GLUE_MAGIC = 0x03
GLUE_UNCOMPRESSED, GLUE_ZLIB = 0x00, 0x05
GLUE_HEADER_BYTES = 18  # magic, compression, 16-byte schema version UUID
EPOCH_MILLIS_ABOVE = 100_000_000_000  # a number this large is epoch ms (year 5138 in seconds)

# Built by position on the hot path; the names are checked against the class at import.
_new_submission = maker(
    Submission,
    positional=("raw", "provenance", "parsed", "position", "schema_fingerprint", "schema_ref"),
)

_MISSING = object()
_FROM_SCHEMA = object()  # source / event type of the Avro writer schema's registry entry
_FROM_PARTITION_KEY = object()


@dataclass(frozen=True, slots=True)
class _Decoded:
    """A user record's body, decoded by the binding's format."""

    value: Any  # a JSON value, an Avro datum (made JSON-safe), or None for raw
    entry: SchemaEntry | None = None


class RecordDecoder:
    """Turns one binding's stream records into submissions."""

    def __init__(
        self,
        binding: TapBinding,
        registry: SchemaRegistry | None = None,
        *,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        remote: RemoteSchemas[Any] | None = None,
    ) -> None:
        """``remote``: the binding's remote registry (Confluent ``registry_url``, Glue), with
        the folder's entries first. A lookup it cannot make raises ``RegistryUnavailable``
        out of ``submissions``: the record is not decided, the reader waits and retries."""
        self.binding = binding
        self._registry = registry or SchemaRegistry()
        self._remote = remote
        # A cache hit is one ``dict.get``; a miss (``None``) is asked of the remote registry.
        self._cached: Callable[[Any], SchemaEntry | None] = (
            remote.cached if remote is not None else self._registry.by_id
        )
        self._max_bytes = max_event_bytes
        self._envelope_mode = binding.envelope_mode
        self._plan = _field_plan(binding)
        # A binding's constant source and event type are the rejected records' too, whatever
        # stopped them (not JSON, too large, not Avro...), so audits file them where they belong.
        self._constants = {
            name: spec.constant
            for name, limit in (
                ("source", MAX_SOURCE_LENGTH),
                ("event_type", MAX_EVENT_TYPE_LENGTH),
            )
            if (spec := getattr(binding, name)) is not None
            and spec.constant is not None
            and len(spec.constant) <= limit
        }
        self._fast = fast_mapper(binding)  # for records that plainly fit (consumers/tap/fastmap.py)
        self._body: Callable[[bytes], _Decoded | Rejection] = {
            Format.JSON: self._json,
            Format.AVRO_CONFLUENT: self._confluent,
            Format.AVRO_SINGLE_OBJECT: self._single_object,
            Format.AVRO_GLUE: self._glue,
            Format.RAW: lambda raw: _Decoded(None),
        }[binding.format]

    def submissions(self, record: StreamRecord) -> list[Submission]:
        """Every user record of ``record``, in sub-sequence order."""
        data, key = record.data, record.partition_key
        if not is_aggregated(data):  # its own single user record, sub-sequence number 0
            parsed, entry = self.parse(data, key, record.arrival_time)
            return [self._submission(record, 0, key, data, parsed, entry)]
        users = deaggregate(data, key)
        if isinstance(users, CorruptAggregate):
            rejection = replace(Rejection(Reason.UNDECODABLE, users.detail), **self._constants)
            return [self._submission(record, 0, key, data, rejection, None)]
        parse, arrival, make = self.parse, record.arrival_time, self._submission
        return [
            make(
                record,
                u.sub_sequence_number,
                u.partition_key,
                u.data,
                *parse(u.data, u.partition_key, arrival),
            )
            for u in users
        ]

    @staticmethod
    def _submission(
        record: StreamRecord,
        sub: int,
        partition_key: str,
        data: bytes,
        parsed: Event | Rejection,
        entry: SchemaEntry | None,
    ) -> Submission:
        stream, shard_id, sequence = record.stream, record.shard_id, record.sequence_number
        provenance = new_provenance(  # positional, in Provenance's field order: once a record
            f"kinesis:{stream}:{shard_id}:{sequence}:{sub}",  # occurrence id (contract)
            ORIGIN,
            None,  # request id
            stream,
            shard_id,
            sequence,
            sub,
            partition_key,
            record.arrival_time,
        )
        return _new_submission(
            data,
            provenance,
            parsed,
            f"{sequence}.{sub}",  # position: "<sequence>.<sub>", in archive file names
            entry.fingerprint if entry is not None else None,
            entry.ref if entry is not None else None,
        )

    # -- one user record -----------------------------------------------------------------------
    def parse(
        self, raw: bytes, partition_key: str, arrival_time: datetime
    ) -> tuple[Event | Rejection, SchemaEntry | None]:
        parsed, entry = self._parse(raw, partition_key, arrival_time)
        if self._constants and type(parsed) is Rejection:
            parsed = replace(parsed, **self._constants)
        return parsed, entry

    def _parse(
        self, raw: bytes, partition_key: str, arrival_time: datetime
    ) -> tuple[Event | Rejection, SchemaEntry | None]:
        if len(raw) > self._max_bytes:
            return self._reject(
                Reason.TOO_LARGE, f"record is {len(raw)} bytes, limit {self._max_bytes}", None
            ), None
        if self._fast is not None:  # the busy case: a mapped JSON binding
            value = decode_json(raw)
            if type(value) is dict:
                event = self._fast(value, partition_key, arrival_time)
                if event is not None:
                    return event, None
                return self._mapped(raw, value, None, partition_key, arrival_time), None
            value = self._json_value(raw)  # a rejection, worded as for every other format
            assert isinstance(value, Rejection)
            return value, None
        body = self._body(raw)
        if isinstance(body, Rejection):
            return body, None
        if self._envelope_mode:
            return self._envelope(body.value, partition_key, arrival_time), None
        return self._mapped(raw, body.value, body.entry, partition_key, arrival_time), body.entry

    def _envelope(
        self, value: Any, partition_key: str, arrival_time: datetime
    ) -> Event | Rejection:
        if isinstance(value, dict):
            if "entity_id" not in value:
                value = {**value, "entity_id": partition_key}
            if "event_time" not in value:
                value = {**value, "event_time": arrival_time}
        return parse_event(value)

    def _mapped(
        self,
        raw: bytes,
        value: Any,
        entry: SchemaEntry | None,
        partition_key: str,
        arrival_time: datetime,
    ) -> Event | Rejection:
        texts: dict[str, str] = {}  # what is known so far, also for a rejection's audit fields
        for name, spec, path, fallback in self._plan:
            if path is not None:
                found = value
                for part in path:  # _lookup, inlined for the usual case: nested objects
                    if type(found) is not dict:
                        found = _lookup(spec, value)  # type: ignore[arg-type]
                        break
                    found = found.get(part, _MISSING)
                    if found is _MISSING:
                        break
                else:
                    if found is None:
                        found = _MISSING
            elif spec is not None:
                found = spec.constant
            elif fallback is _FROM_SCHEMA:
                found = (getattr(entry, name) or _MISSING) if entry is not None else _MISSING
            elif fallback is _FROM_PARTITION_KEY:
                found = partition_key
            else:
                found = fallback
            if found is _MISSING:
                return self._reject(
                    Reason.MISSING_FIELD, f"{name}: {spec or 'not mapped'} is missing", texts
                )
            if found is None:
                continue
            text = found if type(found) is str else _text(found)
            if text is None:
                return self._reject(
                    Reason.INVALID_FIELD,
                    f"{name}: {spec} is a {type(found).__name__}, expected a string",
                    texts,
                )
            texts[name] = text
        spec = self.binding.event_time
        when = arrival_time if spec is None else _lookup(spec, value)
        if when is _MISSING:
            return self._reject(Reason.MISSING_FIELD, f"event_time: {spec} is missing", texts)
        stamp = _time(when)
        if type(stamp) is str:
            return self._reject(
                Reason.INVALID_TIME,
                f"event_time: {spec} = {str(when)[:64]!r} is not a "
                f"time with a UTC offset or an epoch number{stamp}",
                texts,
            )
        assert isinstance(stamp, datetime)
        payload = _payload(raw, value, self.binding.format)
        event = plain_event(texts, stamp, payload)
        if event is not None:
            return event
        return parse_event({**texts, "event_time": stamp, "payload": payload})

    @staticmethod
    def _reject(reason: Reason, detail: str, known: dict[str, str] | None) -> Rejection:
        known = known or {}
        return Rejection(
            reason,
            detail,
            source=known.get("source"),
            event_type=known.get("event_type"),
            entity_id=known.get("entity_id"),
        )

    # -- formats -------------------------------------------------------------------------------
    def _json(self, raw: bytes) -> _Decoded | Rejection:
        value = self._json_value(raw)
        return value if isinstance(value, Rejection) else _Decoded(value)

    def _json_value(self, raw: bytes) -> Any | Rejection:
        value = decode_json(raw)
        if isinstance(value, Rejection):
            return value
        if not self._envelope_mode and not isinstance(value, dict):
            kind = type(value).__name__ if value is not None else "null"
            return Rejection(Reason.NOT_AN_OBJECT, f"expected a JSON object, got {kind}")
        return value

    def _confluent(self, raw: bytes) -> _Decoded | Rejection:
        if len(raw) < CONFLUENT_HEADER_BYTES or raw[0] != CONFLUENT_MAGIC:
            return Rejection(
                Reason.UNDECODABLE,
                f"not Confluent Avro: expected magic byte 0x00 and a 4-byte schema id, "
                f"got {raw[:CONFLUENT_HEADER_BYTES].hex() or 'nothing'}",
            )
        schema_id = int.from_bytes(raw[1:CONFLUENT_HEADER_BYTES], "big")
        entry = self._cached(schema_id)
        if entry is None and self._remote is not None:
            entry = self._remote.get(schema_id)
        if entry is None:
            if self._remote is None:
                where = "is not in the configured registry"
            else:
                where = (
                    f"is not in the registry folder nor in the schema registry at "
                    f"{self.binding.registry_url}: {self._remote.why(schema_id)}"
                )
            return Rejection(
                Reason.UNKNOWN_SCHEMA, f"Confluent framing: schema id {schema_id} {where}"
            )
        return _avro(raw[CONFLUENT_HEADER_BYTES:], entry, f"Confluent schema id {schema_id}")

    def _single_object(self, raw: bytes) -> _Decoded | Rejection:
        if len(raw) < SINGLE_OBJECT_HEADER_BYTES or raw[:2] != SINGLE_OBJECT_MAGIC:
            return Rejection(
                Reason.UNDECODABLE,
                f"not Avro single-object encoding: expected C3 01 and an 8-byte fingerprint, "
                f"got {raw[:SINGLE_OBJECT_HEADER_BYTES].hex() or 'nothing'}",
            )
        fingerprint = raw[2:SINGLE_OBJECT_HEADER_BYTES]
        entry = self._registry.by_fingerprint(fingerprint)
        if entry is None:
            return Rejection(
                Reason.UNKNOWN_SCHEMA,
                f"single-object framing: schema fingerprint {fingerprint.hex()} (CRC-64-AVRO "
                "of the writer schema's canonical form) is not in the configured registry",
            )
        return _avro(
            raw[SINGLE_OBJECT_HEADER_BYTES:],
            entry,
            f"single-object fingerprint {fingerprint.hex()}",
        )

    def _glue(self, raw: bytes) -> _Decoded | Rejection:
        if (
            len(raw) < GLUE_HEADER_BYTES
            or raw[0] != GLUE_MAGIC
            or raw[1] not in (GLUE_UNCOMPRESSED, GLUE_ZLIB)
        ):
            return Rejection(
                Reason.UNDECODABLE,
                "not AWS Glue Schema Registry framing: expected header byte 03, compression "
                "byte 00 or 05 (zlib) and a 16-byte schema version UUID, "
                f"got {raw[:GLUE_HEADER_BYTES].hex() or 'nothing'}",
            )
        key = raw[2:GLUE_HEADER_BYTES]
        entry = self._cached(key)
        if entry is None and self._remote is not None:
            entry = self._remote.get(key)
        if entry is None:
            why = self._remote.why(key) if self._remote is not None else "no Glue client"
            return Rejection(
                Reason.UNKNOWN_SCHEMA,
                f"Glue framing: schema version {uuid.UUID(bytes=key)} could not be resolved "
                f"(glue:GetSchemaVersion): {why}",
            )
        framing = f"Glue schema version {uuid.UUID(bytes=key)}"
        body = raw[GLUE_HEADER_BYTES:]
        if raw[1] == GLUE_ZLIB:
            inflate = zlib.decompressobj()
            try:
                body = inflate.decompress(body, self._max_bytes + 1)
            except zlib.error as exc:
                return Rejection(
                    Reason.UNDECODABLE,
                    f"Glue framing (zlib, {framing}): the body does not inflate: {exc}",
                    source=entry.source,
                    event_type=entry.event_type,
                )
            if len(body) > self._max_bytes or inflate.unconsumed_tail:
                return Rejection(
                    Reason.TOO_LARGE,
                    f"Glue framing (zlib, {framing}): inflates past {self._max_bytes} bytes",
                    source=entry.source,
                    event_type=entry.event_type,
                )
        return _avro(body, entry, framing)


def _avro(body: bytes, entry: SchemaEntry, framing: str) -> _Decoded | Rejection:
    """``body`` decoded with ``entry``'s schema, named in rejections with ``framing`` (how the
    record named it)."""
    buffer = io.BytesIO(body)
    try:
        datum = fastavro.schemaless_reader(buffer, entry.parsed, None)
    except Exception as exc:  # foreign bytes: fastavro raises many kinds; none may escape
        return Rejection(
            Reason.SCHEMA_MISMATCH,
            f"does not decode with {entry.name} ({framing}): {type(exc).__name__}: {exc}"[:300],
            source=entry.source,
            event_type=entry.event_type,
        )
    if buffer.tell() != len(body):
        return Rejection(
            Reason.SCHEMA_MISMATCH,
            f"{len(body) - buffer.tell()} bytes left over after decoding with {entry.name} "
            f"({framing})",
            source=entry.source,
            event_type=entry.event_type,
        )
    return _Decoded(json_safe(datum), entry)


def _field_plan(
    binding: TapBinding,
) -> list[tuple[str, FieldSpec | None, tuple[str, ...] | None, Any]]:
    """Per text field: the binding's spec (and its path, if it is one), or where its default
    comes from (decided once)."""
    plan: list[tuple[str, FieldSpec | None, tuple[str, ...] | None, Any]] = []
    for name in ("source", "event_type"):
        spec: FieldSpec | None = getattr(binding, name)
        if spec is None and binding.format is Format.JSON:
            spec = FieldSpec(path=(name,))  # JSON records may carry them themselves
        plan.append((name, spec, _path(spec), _FROM_SCHEMA if spec is None else None))
    plan.append(("entity_id", binding.entity_id, _path(binding.entity_id), _FROM_PARTITION_KEY))
    plan.append(("idempotency_key", binding.idempotency_key, _path(binding.idempotency_key), None))
    return plan


def _path(spec: FieldSpec | None) -> tuple[str, ...] | None:
    return spec.path if spec is not None and spec.constant is None else None


def _lookup(spec: FieldSpec, value: Any) -> Any:
    """The value a spec names; ``_MISSING`` when a path finds nothing (or null)."""
    if spec.constant is not None:
        return spec.constant
    current = value
    for part in spec.path or ():
        if isinstance(current, dict):
            current = current.get(part, _MISSING)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
        if current is _MISSING:
            return _MISSING
    return _MISSING if current is None else current


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _time(value: Any) -> datetime | str:
    """The aware UTC time ``value`` names, or (text) what is wrong with it, ``""`` if nothing
    more than that it is no time."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return ""
        try:
            return value.astimezone(UTC)
        except OverflowError:
            return ": out of range (years 1..9999) in UTC"
    if isinstance(value, str):
        try:
            return parse_time(value)
        except ValueError as exc:  # not RFC 3339, sub-microsecond, out of range in UTC
            return f": {exc}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if abs(value) >= EPOCH_MILLIS_ABOVE else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return ""
    return ""


def _payload(raw: bytes, value: Any, fmt: Format) -> dict[str, Any]:
    if fmt is Format.RAW:  # opaque: the bytes are archived as they are; identity needs content
        return {"raw_sha256": hashlib.sha256(raw).hexdigest(), "raw_bytes": len(raw)}
    return value if isinstance(value, dict) else {"value": value}


def json_safe(value: Any) -> Any:
    """An Avro datum as JSON values: bytes → base64 text, times → ISO text, decimals → text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return format_time(value) if value.tzinfo else value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)  # NaN / infinity have no JSON form
    return value


def submissions_of(decoder: RecordDecoder, records: Sequence[StreamRecord]) -> list[Submission]:
    return [sub for record in records for sub in decoder.submissions(record)]
