"""The aggregates port (``Aggregates``): versioned aggregate values, never overwritten.

Table layout: partition ``entity_id``, sort ``version_key`` = ``<day>#<metric>#<version:08d>``,
so an entity's versions list by Query in (day, metric, version) order and the latest version of
one (day, metric) is a single descending Query. A new version is written with
``attribute_not_exists``: two processors racing cannot both write version N.

Large input lists (more than ``INLINE_INPUT_LIMIT`` event ids) are stored in S3 under
``aggregates/`` and the item keeps a pointer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from infra.archive import RawArchive
from infra.dynamo import dynamo_errors, paginate
from infra.errors import ConditionFailed, KitError, NotFound
from infra.keys import escape_segment

INLINE_INPUT_LIMIT = 1000
VERSION_DIGITS = 8


@dataclass(frozen=True, slots=True)
class AggregateVersion:
    entity_id: str
    day: str
    metric: str
    version: int
    value: float | None
    input_hash: str
    input_count: int
    sample_event_ids: list[str]
    computed_at: str
    definition: dict[str, Any]
    replay_id: str | None = None
    previous_version: int | None = None
    input_event_ids: list[str] | None = None  # None when stored in S3 (``inputs_key``)
    inputs_key: str | None = None
    previous_value: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def version_key(self) -> str:
        return version_key(self.day, self.metric, self.version)

    def to_json(self) -> dict[str, Any]:
        out = {
            "entity_id": self.entity_id,
            "day": self.day,
            "metric": self.metric,
            "version": self.version,
            "value": self.value,
            "previous_value": self.previous_value,
            "input_hash": self.input_hash,
            "input_count": self.input_count,
            "sample_event_ids": self.sample_event_ids,
            "computed_at": self.computed_at,
            "replay_id": self.replay_id,
            "previous_version": self.previous_version,
            "definition": self.definition,
        }
        if self.inputs_key:
            out["inputs_key"] = self.inputs_key
        return out


def version_key(day: str, metric: str, version: int) -> str:
    return f"{day}#{metric}#{version:0{VERSION_DIGITS}d}"


class VersionTaken(KitError):
    """Another writer wrote this version first (carries the version that won)."""

    def __init__(self, current: AggregateVersion | None) -> None:
        super().__init__("aggregate version already written")
        self.current = current


class Aggregates(Protocol):
    def latest(self, entity_id: str, day: str, metric: str) -> AggregateVersion | None: ...

    def put(self, version: AggregateVersion) -> None:
        """Write a new version; raise ``VersionTaken`` if that version exists."""
        ...

    def versions(self, entity_id: str, day: str | None = None) -> list[AggregateVersion]: ...

    def inputs(self, version: AggregateVersion) -> list[str]: ...


def _to_item(v: AggregateVersion, inputs_inline: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "entity_id": v.entity_id,
        "version_key": v.version_key,
        "day": v.day,
        "metric": v.metric,
        "version": v.version,
        "value": json.dumps(v.value),  # JSON text: DynamoDB numbers are decimals
        "input_hash": v.input_hash,
        "input_count": v.input_count,
        "sample_event_ids": v.sample_event_ids,
        "computed_at": v.computed_at,
        "definition": json.dumps(v.definition, sort_keys=True),
    }
    optional = {
        "replay_id": v.replay_id,
        "previous_version": v.previous_version,
        "previous_value": json.dumps(v.previous_value) if v.previous_value is not None else None,
        "inputs_key": v.inputs_key,
    }
    item.update({k: val for k, val in optional.items() if val is not None})
    if inputs_inline and v.input_event_ids is not None:
        item["input_event_ids"] = v.input_event_ids
    return item


def _from_item(item: dict[str, Any]) -> AggregateVersion:
    previous = item.get("previous_value")
    return AggregateVersion(
        entity_id=str(item["entity_id"]),
        day=str(item["day"]),
        metric=str(item["metric"]),
        version=int(item["version"]),
        value=json.loads(item["value"]),
        input_hash=str(item["input_hash"]),
        input_count=int(item["input_count"]),
        sample_event_ids=[str(e) for e in item.get("sample_event_ids", [])],
        computed_at=str(item["computed_at"]),
        definition=json.loads(item["definition"]),
        replay_id=item.get("replay_id"),
        previous_version=int(item["previous_version"]) if "previous_version" in item else None,
        input_event_ids=[str(e) for e in item["input_event_ids"]]
        if "input_event_ids" in item
        else None,
        inputs_key=item.get("inputs_key"),
        previous_value=json.loads(previous) if previous is not None else None,
    )


class DynamoAggregates:
    def __init__(
        self,
        dynamodb_client: Any,
        table: str,
        blobs: RawArchive,
        *,
        inline_limit: int = INLINE_INPUT_LIMIT,
    ) -> None:
        self._ddb = dynamodb_client
        self.table = table
        self._blobs = blobs
        self._inline_limit = inline_limit
        self._ser = TypeSerializer()
        self._de = TypeDeserializer()

    def _load(self, raw: dict[str, Any]) -> dict[str, Any]:
        out = {k: self._de.deserialize(v) for k, v in raw.items()}
        return {k: (int(v) if type(v).__name__ == "Decimal" else v) for k, v in out.items()}

    def latest(self, entity_id: str, day: str, metric: str) -> AggregateVersion | None:
        items = list(
            self._query(entity_id, f"{day}#{metric}#", forward=False, limit=1, first_page_only=True)
        )
        return _from_item(items[0]) if items else None

    def put(self, version: AggregateVersion) -> None:
        inline = version.input_event_ids is not None and (
            len(version.input_event_ids) <= self._inline_limit
        )
        if version.input_event_ids is not None and not inline:
            key = f"aggregates/{escape_segment(version.entity_id)}/{version.version_key}.json"
            body = json.dumps(version.input_event_ids).encode()
            self._blobs.put_file(key, body)  # written once; a retry finds it there
            version = _with_inputs_key(version, key)
        item = {k: self._ser.serialize(v) for k, v in _to_item(version, inline).items()}
        try:
            with dynamo_errors(self.table, "PutItem"):
                self._ddb.put_item(
                    TableName=self.table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(version_key)",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
        except ConditionFailed as exc:
            current = _from_item(self._load(dict(exc.item))) if exc.item else None
            raise VersionTaken(current) from exc

    def versions(self, entity_id: str, day: str | None = None) -> list[AggregateVersion]:
        prefix = f"{day}#" if day else None
        return [_from_item(i) for i in self._query(entity_id, prefix, forward=True)]

    def inputs(self, version: AggregateVersion) -> list[str]:
        if version.input_event_ids is not None:
            return version.input_event_ids
        if version.inputs_key is None:
            raise NotFound(f"version {version.version} has no input list")
        return [str(e) for e in json.loads(self._blobs.get_file(version.inputs_key))]

    def _query(
        self,
        entity_id: str,
        prefix: str | None,
        *,
        forward: bool,
        limit: int | None = None,
        first_page_only: bool = False,
    ) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "entity_id = :e",
            "ExpressionAttributeValues": {":e": {"S": entity_id}},
            "ScanIndexForward": forward,
            "ConsistentRead": True,
        }
        if prefix:
            kwargs["KeyConditionExpression"] += " AND begins_with(version_key, :p)"
            kwargs["ExpressionAttributeValues"][":p"] = {"S": prefix}
        if limit:
            kwargs["Limit"] = limit
        for page in paginate(self._ddb, "Query", self.table, **kwargs):
            for raw in page.get("Items", []):
                yield self._load(raw)
            if first_page_only:
                return


def _with_inputs_key(v: AggregateVersion, key: str) -> AggregateVersion:
    return AggregateVersion(
        **{**{name: getattr(v, name) for name in AggregateVersion.__slots__}, "inputs_key": key}
    )


class MemoryAggregates:
    """In-memory versions with the same once-only rule, for unit tests."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], AggregateVersion] = {}
        self._lock = threading.Lock()

    def latest(self, entity_id: str, day: str, metric: str) -> AggregateVersion | None:
        found = [
            v
            for (e, _), v in self.items.items()
            if (e, v.day, v.metric) == (entity_id, day, metric)
        ]
        return max(found, key=lambda v: v.version) if found else None

    def put(self, version: AggregateVersion) -> None:
        with self._lock:
            key = (version.entity_id, version.version_key)
            if key in self.items:
                raise VersionTaken(self.items[key])
            self.items[key] = version

    def versions(self, entity_id: str, day: str | None = None) -> list[AggregateVersion]:
        return [
            v
            for (e, k), v in sorted(self.items.items())
            if e == entity_id and (day is None or v.day == day)
        ]

    def inputs(self, version: AggregateVersion) -> list[str]:
        return list(version.input_event_ids or [])
