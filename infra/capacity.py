"""A DynamoDB capacity model for the kit's boto3 clients: botocore event hooks, like ``faults``.

``CapacityModel.install(client)`` prices every DynamoDB request by AWS's published rules and
tracks consumption per partition key value per second, on the table and on each GSI:

- item size: attribute name bytes + value bytes; strings UTF-8 bytes, binary raw bytes, numbers
  1 byte per 2 significant digits + 1, booleans and nulls 1 byte, lists and maps 3 bytes + 1 byte
  per element, sets the sum of their elements;
- writes: 1 WRU per 1 KB (rounded up) of the larger of the old and new item, 2x inside
  ``TransactWriteItems``; a failed condition still costs the write; ``BatchExecuteStatement``
  prices each ``INSERT`` of ``infra.partiql``'s shape as a put (1x; one that fails with
  ``DuplicateItem`` still costs it), other PartiQL statements are not priced;
- reads: 1 RRU per 4 KB (rounded up), half of that when eventually consistent, 2x inside
  ``TransactGetItems``; ``Query``/``Scan`` sum the sizes of the items they return, then round;
- each GSI write costs 1 WRU per 1 KB of the *projected* item; an update that changes the index
  key is a delete of the old entry plus a put of the new one.

Old item images come from a shadow the model keeps of what it has seen written (an item written
before the model was installed is priced as new). ``UpdateItem`` is priced by applying the plain
``SET a = :v`` / ``SET a = if_not_exists(a, :v)`` / ``ADD a :v`` / ``REMOVE a`` clauses of its
expression to the shadow; other clauses are ignored (an approximation).

``strict=True`` enforces AWS's per-partition limits (1,000 WCU/s and 3,000 RCU/s per partition
key value, on the table and on each index) by raising ``ProvisionedThroughputExceededException``
before the request is sent, as AWS would.

Used by tests and ``bench/cost.py``; nothing in the kit's own paths imports it.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from infra.partiql import parse_insert, parse_set_add

WRITE_UNIT = 1024
READ_UNIT = 4096
PARTITION_WCU = 1000.0
PARTITION_RCU = 3000.0
STORAGE_OVERHEAD = 100  # bytes per item, on the table and on each index

Item = Mapping[str, Any]  # low-level AttributeValue dicts: {"name": {"S": "x"}}


# -- sizes ----------------------------------------------------------------------------------------
def number_size(text: str) -> int:
    """Bytes DynamoDB bills for a number: 1 per 2 significant digits, plus 1."""
    digits = str(Decimal(text).normalize()).lstrip("-").replace(".", "")
    if "E" in digits:
        digits = digits.split("E")[0]
    digits = digits.strip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def value_size(value: Mapping[str, Any]) -> int:
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(str(raw).encode())
    if kind == "B":
        return len(raw if isinstance(raw, bytes) else str(raw).encode())
    if kind == "N":
        return number_size(str(raw))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in raw)
    if kind == "NS":
        return sum(number_size(n) for n in raw)
    if kind == "BS":
        return sum(len(b) for b in raw)
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in raw)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in raw.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: Item) -> int:
    """Bytes of an item by DynamoDB's rules: attribute names plus values."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / WRITE_UNIT))


def read_units(size: int, *, consistent: bool) -> float:
    units = max(1, math.ceil(size / READ_UNIT))
    return float(units) if consistent else units / 2


# -- table layout ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class IndexSpec:
    name: str
    hash_key: str
    range_key: str | None
    projection: str = "ALL"  # ALL | KEYS_ONLY | INCLUDE
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSpec:
    name: str
    hash_key: str
    range_key: str | None
    indexes: tuple[IndexSpec, ...] = ()

    @classmethod
    def from_description(cls, table: Mapping[str, Any]) -> TableSpec:
        """From a ``DescribeTable``'s ``Table`` (or a ``CreateTable`` request)."""

        def keys(schema: Iterable[Mapping[str, str]]) -> tuple[str, str | None]:
            by_type = {k["KeyType"]: k["AttributeName"] for k in schema}
            return by_type["HASH"], by_type.get("RANGE")

        indexes = []
        for gsi in table.get("GlobalSecondaryIndexes", ()):
            hash_key, range_key = keys(gsi["KeySchema"])
            projection = gsi.get("Projection", {})
            indexes.append(
                IndexSpec(
                    gsi["IndexName"],
                    hash_key,
                    range_key,
                    projection.get("ProjectionType", "ALL"),
                    tuple(projection.get("NonKeyAttributes", ())),
                )
            )
        hash_key, range_key = keys(table["KeySchema"])
        return cls(table["TableName"], hash_key, range_key, tuple(indexes))

    def key_names(self) -> tuple[str, ...]:
        return tuple(k for k in (self.hash_key, self.range_key) if k)

    def key_of(self, item: Item) -> tuple[str, ...]:
        return tuple(_plain(item[k]) for k in self.key_names() if k in item)

    def projected(self, index: IndexSpec, item: Item) -> Item | None:
        """The index entry for ``item``, or None when the item lacks the index's keys."""
        if index.hash_key not in item or (index.range_key and index.range_key not in item):
            return None
        if index.projection == "ALL":
            return item
        keep = {*self.key_names(), index.hash_key, *(k for k in [index.range_key] if k)}
        if index.projection == "INCLUDE":
            keep.update(index.include)
        return {k: v for k, v in item.items() if k in keep}


def _plain(value: Mapping[str, Any]) -> str:
    ((kind, raw),) = value.items()
    return f"{kind}:{raw!r}" if kind not in ("S", "N") else str(raw)


# -- consumption ----------------------------------------------------------------------------------
@dataclass
class Usage:
    """Totals per table; ``by_target`` splits WRU by ``table`` / ``table:index``."""

    wru: float = 0.0
    rru: float = 0.0
    requests: Counter[str] = field(default_factory=Counter)
    by_target: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def throughput_exceeded(operation: str, message: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": message}},
        operation,
    )


_SET = re.compile(r"(#?\w+)\s*=\s*(?:if_not_exists\s*\(\s*#?\w+\s*,\s*)?(:\w+)")
_ADD = re.compile(r"(#?\w+)\s+(:\w+)")


class CapacityModel:
    """Prices DynamoDB requests and, in strict mode, throttles hot partition keys.

    Thread-safe: one model may serve every DynamoDB client of a process.
    """

    def __init__(
        self,
        tables: Iterable[TableSpec],
        *,
        strict: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wcu_limit: float = PARTITION_WCU,
        rcu_limit: float = PARTITION_RCU,
    ) -> None:
        self.tables = {t.name: t for t in tables}
        self.strict = strict
        self.wcu_limit = wcu_limit
        self.rcu_limit = rcu_limit
        self._clock = clock
        self._lock = threading.Lock()
        self.usage: dict[str, Usage] = defaultdict(Usage)
        # (second, target, partition key value) -> units
        self._wcu: dict[tuple[int, str, str], float] = defaultdict(float)
        self._rcu: dict[tuple[int, str, str], float] = defaultdict(float)
        self.peak_wcu: dict[str, float] = defaultdict(float)  # target -> top units/key/second
        self.peak_rcu: dict[str, float] = defaultdict(float)
        self._shadow: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
        self.throttled = 0

    # -- wiring ---------------------------------------------------------------------------------
    def install(self, client: Any) -> Any:
        """Hook ``client`` (a boto3 DynamoDB client); returns it. Installing twice is a no-op."""
        events = client.meta.events
        events.register(
            "before-call.dynamodb", self._before_call, unique_id=f"pik-capacity-{id(self)}"
        )
        events.register(
            "after-call.dynamodb", self._after_call, unique_id=f"pik-capacity-after-{id(self)}"
        )
        return client

    # -- pricing (pure: no state changes) -------------------------------------------------------
    def write_cost(
        self, table: str, old: Item | None, new: Item | None, *, transactional: bool = False
    ) -> list[tuple[str, str, float]]:
        """(target, partition key value, WRU) for one item write (``new`` None = delete)."""
        spec = self.tables.get(table)
        size = max(item_size(old) if old else 0, item_size(new) if new else 0)
        hash_of = (new or old or {}).get(spec.hash_key) if spec else None
        key = _plain(hash_of) if hash_of else "?"
        charges = [(table, key, float(write_units(size) * (2 if transactional else 1)))]
        if spec is None:
            return charges
        for index in spec.indexes:
            target = f"{table}:{index.name}"
            before = spec.projected(index, old) if old else None
            after = spec.projected(index, new) if new else None
            if before is None and after is None:
                continue
            same_key = (
                before is not None
                and after is not None
                and all(
                    before.get(k) == after.get(k) for k in (index.hash_key, index.range_key) if k
                )
            )
            if same_key and before == after:
                continue  # nothing projected changed
            if same_key:
                assert before is not None and after is not None
                size = max(item_size(before), item_size(after))
                charges.append((target, _plain(after[index.hash_key]), write_units(size)))
                continue
            if before is not None:
                charges.append(
                    (target, _plain(before[index.hash_key]), write_units(item_size(before)))
                )
            if after is not None:
                charges.append(
                    (target, _plain(after[index.hash_key]), write_units(item_size(after)))
                )
        return charges

    def _old(self, table: str, key: Item) -> dict[str, Any] | None:
        spec = self.tables.get(table)
        if spec is None:
            return None
        return self._shadow.get((table, spec.key_of(key)))

    def _updated(self, params: Mapping[str, Any]) -> dict[str, Any]:
        old = self._old(params["TableName"], params["Key"])
        item: dict[str, Any] = dict(old) if old else dict(params["Key"])
        names = params.get("ExpressionAttributeNames", {})
        values = params.get("ExpressionAttributeValues", {})
        expression = params.get("UpdateExpression", "")
        clauses = re.split(r"\b(SET|ADD|REMOVE|DELETE)\b", expression)
        for verb, body in zip(clauses[1::2], clauses[2::2], strict=False):
            if verb == "SET":
                for name, ref in _SET.findall(body):
                    if ref in values:
                        item[names.get(name, name)] = values[ref]
            elif verb == "ADD":
                for name, ref in _ADD.findall(body):
                    attr = names.get(name, name)
                    value, current = values.get(ref), item.get(attr)
                    if value is None:
                        continue
                    kind = next(iter(value))
                    if current is not None and kind in ("SS", "NS") and kind in current:
                        merged = sorted({*current[kind], *value[kind]})
                        item[attr] = {kind: merged}  # a set grows (a number keeps its size)
                    elif current is None:
                        item[attr] = value
            elif verb == "REMOVE":
                for name in re.findall(r"#?\w+", body):
                    item.pop(names.get(name, name), None)
        return item

    def _statement(self, statement: Mapping[str, Any]) -> tuple[str, Any, Any, bool] | None:
        """(table, old, new, False) of one of ``infra.partiql``'s statements, else None."""
        text, parameters = statement.get("Statement", ""), statement.get("Parameters")
        inserted = parse_insert(text, parameters)
        if inserted is not None:
            table, new = inserted
            return table, self._old(table, new), new, False
        added = parse_set_add(text, parameters)
        if added is None:
            return None
        table, key, attribute, values = added
        update = {
            "TableName": table,
            "Key": key,
            "UpdateExpression": "ADD #a :v",
            "ExpressionAttributeNames": {"#a": attribute},
            "ExpressionAttributeValues": {":v": values},
        }
        return table, self._old(table, key), self._updated(update), False

    # -- the hooks ------------------------------------------------------------------------------
    def _writes(
        self, operation: str, params: Mapping[str, Any]
    ) -> list[tuple[str, Any, Any, bool]]:
        """(table, old, new, transactional) per item the request writes."""
        if operation == "PutItem":
            table = params["TableName"]
            return [(table, self._old(table, params["Item"]), params["Item"], False)]
        if operation == "DeleteItem":
            table = params["TableName"]
            return [(table, self._old(table, params["Key"]), None, False)]
        if operation == "UpdateItem":
            table = params["TableName"]
            return [(table, self._old(table, params["Key"]), self._updated(params), False)]
        if operation == "BatchWriteItem":
            out = []
            for table, requests in params["RequestItems"].items():
                for request in requests:
                    if "PutRequest" in request:
                        new = request["PutRequest"]["Item"]
                        out.append((table, self._old(table, new), new, False))
                    else:
                        key = request["DeleteRequest"]["Key"]
                        out.append((table, self._old(table, key), None, False))
            return out
        if operation == "BatchExecuteStatement":  # the INSERTs and set_adds of infra.partiql
            return [w for w in map(self._statement, params.get("Statements", ())) if w]
        if operation == "TransactWriteItems":
            out = []
            for entry in params["TransactItems"]:
                if "Put" in entry:
                    table, new = entry["Put"]["TableName"], entry["Put"]["Item"]
                    out.append((table, self._old(table, new), new, True))
                elif "Delete" in entry:
                    table, key = entry["Delete"]["TableName"], entry["Delete"]["Key"]
                    out.append((table, self._old(table, key), None, True))
                elif "Update" in entry:
                    update = entry["Update"]
                    table = update["TableName"]
                    old = self._old(table, update["Key"])
                    out.append((table, old, self._updated(update), True))
                else:  # ConditionCheck: a read-sized write-unit charge on the table
                    check = entry["ConditionCheck"]
                    table = check["TableName"]
                    out.append((table, self._old(table, check["Key"]), None, True))
            return out
        return []

    def _before_call(
        self, model: Any, params: Mapping[str, Any], context: Any = None, **kwargs: Any
    ) -> None:
        operation = model.name
        request = _decode(params.get("body"))
        if request is None:
            return
        charges: list[tuple[str, str, float]] = []
        each: list[list[tuple[str, str, float]]] = []  # per write, for refunds (_after_call)
        for table, old, new, transactional in self._writes(operation, request):
            if old is None and new is None:
                each.append([(table, "?", 2.0 if transactional else 1.0)])
            else:
                each.append(self.write_cost(table, old, new, transactional=transactional))
            charges.extend(each[-1])
        if isinstance(context, dict):
            context["pik_capacity_request"] = request
            context["pik_capacity_charges"] = (int(self._clock()), each)
        with self._lock:
            second = int(self._clock())
            if self.strict:
                for target, key, units in charges:
                    if self._wcu[(second, target, key)] + units > self.wcu_limit:
                        self.throttled += 1
                        raise throughput_exceeded(
                            operation, f"partition key {key!r} of {target} is over its write limit"
                        )
                for target, key in self._read_keys(operation, request):
                    if self._rcu[(second, target, key)] >= self.rcu_limit:
                        self.throttled += 1
                        raise throughput_exceeded(
                            operation, f"partition key {key!r} of {target} is over its read limit"
                        )
            for target, key, units in charges:
                table = target.split(":", 1)[0]
                self.usage[table].wru += units
                self.usage[table].by_target[target] += units
                slot = (second, target, key)
                self._wcu[slot] += units
                self.peak_wcu[target] = max(self.peak_wcu[target], self._wcu[slot])
            for table in _tables(operation, request):
                self.usage[table].requests[operation] += 1

    def _read_keys(self, operation: str, request: Mapping[str, Any]) -> list[tuple[str, str]]:
        if operation != "Query":
            return []
        table = request["TableName"]
        target = f"{table}:{request['IndexName']}" if "IndexName" in request else table
        values = request.get("ExpressionAttributeValues", {})
        # the partition key is the first value of an equality in the key condition
        match = re.search(r"=\s*(:\w+)", request.get("KeyConditionExpression", ""))
        if not match or match.group(1) not in values:
            return []
        return [(target, _plain(values[match.group(1)]))]

    def _after_call(
        self, model: Any, parsed: Mapping[str, Any], context: Any = None, **kw: Any
    ) -> None:
        operation = model.name
        request = context.get("pik_capacity_request") if isinstance(context, dict) else None
        if request is None:
            return
        failed = "Error" in parsed
        reads: list[tuple[str, str, float]] = []
        consistent = bool(request.get("ConsistentRead"))
        if operation == "GetItem" and not failed:
            item = parsed.get("Item")
            size = item_size(item) if item else 0
            reads.append((request["TableName"], "?", read_units(size, consistent=consistent)))
        elif operation in ("Query", "Scan") and not failed:
            size = sum(item_size(i) for i in parsed.get("Items", ()))
            target_keys = self._read_keys(operation, request)
            target, key = target_keys[0] if target_keys else (request["TableName"], "?")
            if "IndexName" in request and not target_keys:
                target = f"{request['TableName']}:{request['IndexName']}"
            reads.append((target, key, read_units(size, consistent=consistent)))
        elif operation == "BatchGetItem" and not failed:
            for table, items in parsed.get("Responses", {}).items():
                ask = request["RequestItems"].get(table, {})
                strong = bool(ask.get("ConsistentRead"))
                for item in items:
                    reads.append((table, "?", read_units(item_size(item), consistent=strong)))
        elif operation == "TransactGetItems" and not failed:
            for entry, response in zip(
                request["TransactItems"], parsed.get("Responses", ()), strict=False
            ):
                item = response.get("Item")
                size = item_size(item) if item else 0
                reads.append(
                    (entry["Get"]["TableName"], "?", 2 * read_units(size, consistent=True))
                )
        with self._lock:
            second = int(self._clock())
            for target, key, units in reads:
                self.usage[target.split(":", 1)[0]].rru += units
                slot = (second, target, key)
                self._rcu[slot] += units
                self.peak_rcu[target] = max(self.peak_rcu[target], self._rcu[slot])
            if failed:
                return
            if operation == "BatchExecuteStatement" and isinstance(context, dict):
                self._refund_failed(request, parsed, context.get("pik_capacity_charges"))
            for table, old, new, _ in self._writes_applied(operation, request, parsed):
                spec = self.tables.get(table)
                if spec is None:
                    continue
                primary = spec.key_of(new if new is not None else old)
                if new is None:
                    self._shadow.pop((table, primary), None)
                else:
                    self._shadow[(table, primary)] = dict(new)

    def _refund_failed(
        self, request: Mapping[str, Any], parsed: Mapping[str, Any], charged: Any
    ) -> None:
        """A statement that failed (``DuplicateItem``, ``ConditionalCheckFailed``) wrote no
        index entry: its index charges are given back (its table charge stays: DynamoDB bills
        a failed conditional write for the item's size). Under ``self._lock``."""
        if not charged:
            return
        second, each = charged
        charges: Iterator[list[tuple[str, str, float]]] = iter(each)
        for statement, response in zip(
            request.get("Statements", ()), parsed.get("Responses", ()), strict=False
        ):
            if self._statement(statement) is None:
                continue
            mine: list[tuple[str, str, float]] = next(charges, [])
            if "Error" not in response:
                continue
            for target, key, units in mine:
                if ":" not in target:
                    continue
                self.usage[target.split(":", 1)[0]].wru -= units
                self.usage[target.split(":", 1)[0]].by_target[target] -= units
                self._wcu[(second, target, key)] -= units

    def _writes_applied(
        self, operation: str, request: Mapping[str, Any], parsed: Mapping[str, Any]
    ) -> list[tuple[str, Any, Any, bool]]:
        if operation == "BatchExecuteStatement":  # a DuplicateItem statement wrote nothing
            writes = iter(self._writes(operation, request))  # one per statement of ours
            applied = []
            responses = parsed.get("Responses", ())
            for statement, response in zip(request.get("Statements", ()), responses, strict=False):
                text, parameters = statement.get("Statement", ""), statement.get("Parameters")
                if parse_insert(text, parameters) or parse_set_add(text, parameters):
                    write = next(writes)
                    if "Error" not in response:
                        applied.append(write)
            return applied
        if operation == "TransactWriteItems":
            return [
                w
                for w, e in zip(
                    self._writes(operation, request), request["TransactItems"], strict=True
                )
                if "ConditionCheck" not in e
            ]
        if operation == "BatchWriteItem":
            return self._writes(operation, request)  # unprocessed items: rare on the emulator
        if operation == "DeleteItem":
            table = request["TableName"]
            return [(table, request["Key"], None, False)]
        return self._writes(operation, request)

    # -- reporting ------------------------------------------------------------------------------
    def stored_bytes(self, table: str) -> dict[str, int]:
        """Bytes stored per target (table and each index) for the items the model has seen."""
        spec = self.tables[table]
        out: Counter[str] = Counter()
        with self._lock:
            items = [v for (t, _), v in self._shadow.items() if t == table]
        for item in items:
            out[table] += item_size(item) + STORAGE_OVERHEAD
            for index in spec.indexes:
                entry = spec.projected(index, item)
                if entry is not None:
                    out[f"{table}:{index.name}"] += item_size(entry) + STORAGE_OVERHEAD
        return dict(out)

    def items_seen(self, table: str) -> int:
        with self._lock:
            return sum(1 for t, _ in self._shadow if t == table)

    def write_units_by_key(self, target: str) -> dict[str, float]:
        """Write units per partition key value of ``target`` (a table, or ``table:index``),
        summed over every second."""
        out: dict[str, float] = defaultdict(float)
        with self._lock:
            for (_, name, key), units in self._wcu.items():
                if name == target:
                    out[key] += units
        return dict(out)

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {
                table: {
                    "wru": u.wru,
                    "rru": u.rru,
                    "requests": dict(u.requests),
                    "wru_by_target": dict(u.by_target),
                }
                for table, u in self.usage.items()
            } | {"throttled": self.throttled}


def _decode(body: Any) -> dict[str, Any] | None:
    import json

    if not body:
        return None
    try:
        decoded = json.loads(body)
    except (TypeError, ValueError):
        return None
    if not isinstance(decoded, dict):
        return None
    return _unb64(decoded)


def _unb64(request: dict[str, Any]) -> dict[str, Any]:
    return request  # binary values arrive base64-encoded; their length is close enough


def _tables(operation: str, request: Mapping[str, Any]) -> list[str]:
    if "TableName" in request:
        return [request["TableName"]]
    if "RequestItems" in request:
        return list(request["RequestItems"])
    if "Statements" in request:
        ours = [
            parse_insert(s.get("Statement", ""), s.get("Parameters"))
            or parse_set_add(s.get("Statement", ""), s.get("Parameters"))
            for s in request["Statements"]
        ]
        return sorted({p[0] for p in ours if p is not None})
    if "TransactItems" in request:
        return sorted({next(iter(e.values()))["TableName"] for e in request["TransactItems"]})
    return []
