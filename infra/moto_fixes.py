"""Fixes applied to moto inside the embedded backend, where it differs from AWS in ways the kit
would feel. Each is small, named, and explained; ``apply()`` is idempotent.

**TransactWriteItems cost.** moto backs up every table a transaction touches with a
``deepcopy`` of the whole table, so each transaction costs time proportional to the table size
(measured: a 100-item transaction took 0.3 s on an empty table, 7 s with a few hundred items,
and the kit writes every batch this way). AWS evaluates all conditions before writing anything,
and so do we: conditions are checked first against the current items; if any fails, the
transaction is cancelled with AWS's reasons and nothing was written, so no backup is needed and
the whole-table copy is skipped. The emulator serializes requests, so nothing changes between
the check and the writes, which then run without their (already checked) conditions: moto
would otherwise parse each condition twice more.

**Item size checks.** moto enforces DynamoDB's 400 KB item limit by re-measuring every attribute
of an item each time one attribute is set, so building an item of n attributes costs n² size
computations (a third of the time of a batch of index writes). The fix keeps a running total:
setting an attribute re-measures only that attribute and the one it replaces; deleting drops
the total, which is then measured afresh. An attribute changed in place (ADD to a set) is
re-measured when it is next set, so the check can lag by that change; the limit itself is
unchanged. Limit: an operation that passes its condition but is itself invalid
(a malformed update expression) fails after earlier operations were applied; the kit never
sends one, and the error still reaches the caller.

**Query reads its partition.** moto answers every Query by listing and sorting the whole table
(``Table.all_items``), so a Query costs time proportional to the table, not to its partition:
at a million items one took longer than the kit's 30 s read timeout. A Query of the table
itself (no ``IndexName``) names its hash key; the fix hands moto's own Query code that hash
key's items alone (sorted as ``all_items`` sorts them), so the answer is the same and the cost
is the partition's. Queries of a GSI still read the whole table.

**PartiQL INSERT.** moto runs every PartiQL statement by handing its parser a copy of every
item of every table (time proportional to everything stored, per statement), and its ``INSERT``
overwrites an item whose key exists, where AWS fails the statement with ``DuplicateItem``. For
the two shapes the kit writes (``infra.partiql``: every value a parameter) the fix inserts the
item itself, or answers ``DuplicateItem`` for that statement alone as AWS does, and adds to a
set (``ConditionalCheckFailed`` when there is no such item); any other statement still goes to
moto.
"""

from __future__ import annotations

import copy
import re
import threading
from typing import Any

_APPLIED = "_pik_fixes_applied"
_PLACEHOLDER = re.compile(r"[#:][A-Za-z0-9_]+")
ITEM_SIZE_LIMIT = 405_000  # moto's own figure: AWS's 400 KB limit measured at 409-410 KB
CONDITION_FAILED_MESSAGE = "The conditional request failed"


class _CopyWithoutTableBackups:
    """moto's ``copy`` module, except that a deep copy of a whole ``Table`` is the table itself
    (only the transaction backup does that; the pre-check below makes it unnecessary)."""

    def __init__(self, table_type: type) -> None:
        self._table_type = table_type

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    def deepcopy(self, obj: Any, memo: dict[int, Any] | None = None) -> Any:
        if isinstance(obj, self._table_type):
            return obj
        return copy.deepcopy(obj, memo)


def _failed_conditions(backend: Any, transact_items: list[dict[str, Any]]) -> list[Any] | None:
    """moto-shaped cancellation reasons when a condition fails, None when all hold."""
    from moto.dynamodb.comparisons import get_filter_expression

    reasons: list[Any] = []
    failed = False
    for entry in transact_items:
        op_type, op = next(iter(entry.items()))
        condition = op.get("ConditionExpression")
        if not condition:
            reasons.append((None, None, None))
            continue
        table = backend.get_table(op["TableName"])
        if op_type == "Put":
            key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = op["Item"][table.range_key_attr]
        else:
            key = op["Key"]
        current = backend.get_item(op["TableName"], key)
        check = get_filter_expression(
            condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        )
        if check.expr(current):
            reasons.append((None, None, None))
            continue
        failed = True
        old = None
        if current is not None and op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD":
            old = current.to_json()["Attributes"]
        reasons.append(("ConditionalCheckFailed", CONDITION_FAILED_MESSAGE, old))
    return reasons if failed else None


def _without_condition(entry: dict[str, Any]) -> dict[str, Any]:
    """An operation whose condition was already checked: moto need not parse it twice more."""
    op_type, op = next(iter(entry.items()))
    if "ConditionExpression" not in op:
        return entry
    op = {k: v for k, v in op.items() if k != "ConditionExpression"}
    if op_type == "ConditionCheck":
        return {op_type: op}
    used = set(_PLACEHOLDER.findall(op.get("UpdateExpression", "")))
    names = {k: v for k, v in op.get("ExpressionAttributeNames", {}).items() if k in used}
    values = {k: v for k, v in op.get("ExpressionAttributeValues", {}).items() if k in used}
    for key, kept in (("ExpressionAttributeNames", names), ("ExpressionAttributeValues", values)):
        op.pop(key, None)
        if kept:
            op[key] = kept
    return {op_type: op}


def _fast_size_checks() -> None:
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models import dynamo_type
    from moto.dynamodb.models.utilities import bytesize

    limited = dynamo_type.LimitedSizeDict
    dynamo = dynamo_type.DynamoType

    def size_of(value: Any) -> int:
        return int(value.size()) if type(value) is dynamo else bytesize(str(value))

    def measured(self: Any) -> int:
        total = self.__dict__.get("_pik_size")
        if total is None:
            total = sum(bytesize(k) + size_of(v) for k, v in dict.items(self))
        return int(total)

    def setitem(self: Any, key: str, value: Any) -> None:
        total = measured(self)
        if dict.__contains__(self, key):
            total -= bytesize(key) + size_of(dict.__getitem__(self, key))
        total += bytesize(key) + size_of(value)
        if total > ITEM_SIZE_LIMIT:
            raise ItemSizeTooLarge
        dict.__setitem__(self, key, value)
        self.__dict__["_pik_size"] = total

    def forget(name: str) -> Any:
        original = getattr(dict, name)

        def changed(self: Any, *args: Any) -> Any:
            self.__dict__.pop("_pik_size", None)
            return original(self, *args)

        return changed

    limited.__setitem__ = setitem  # type: ignore[method-assign]
    for name in ("__delitem__", "pop", "popitem", "clear"):
        setattr(limited, name, forget(name))


_PARTITION = threading.local()  # (table, hash key) of the table Query this thread is answering


def _partition_queries(table_type: Any) -> None:
    original_query, original_all = table_type.query, table_type.all_items

    def all_items(self: Any) -> list[Any]:
        wanted = getattr(_PARTITION, "key", None)
        if wanted is None or wanted[0] is not self or not self.range_key_attr:
            return original_all(self)
        items = list(self.items.get(wanted[1], {}).values())
        return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name or hash_key is None:
            return original_query(self, hash_key, *args, **kwargs)
        _PARTITION.key = (self, hash_key)
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            _PARTITION.key = None

    table_type.all_items = all_items
    table_type.query = query


_INSERT_LOCK = threading.Lock()


def _partiql_inserts(backend_type: Any) -> None:
    from infra.partiql import (
        CONDITION_FAILED,
        DUPLICATE_ITEM,
        MAX_BATCH_STATEMENTS,
        parse_insert,
        parse_set_add,
    )

    original = backend_type.batch_execute_statement

    def set_add(self: Any, name: str, key: dict[str, Any], attr: str, values: Any) -> Any:
        from moto.dynamodb.models.dynamo_type import DynamoType

        if name not in self.tables:
            message = "Requested resource not found"
            return {"Error": {"Code": "ResourceNotFound", "Message": message}}
        with _INSERT_LOCK:
            item = self.get_item(name, key)
            if item is None:
                message = CONDITION_FAILED_MESSAGE
                return {"TableName": name, "Error": {"Code": CONDITION_FAILED, "Message": message}}
            kind = next(iter(values))
            current = item.attrs.get(attr)
            merged = set(current.value) if current is not None else set()
            item.attrs[attr] = DynamoType({kind: sorted(merged | set(values[kind]))})
        return {"TableName": name}

    def one(self: Any, statement: dict[str, Any]) -> dict[str, Any]:
        text, parameters = statement.get("Statement", ""), statement.get("Parameters")
        update = parse_set_add(text, parameters)
        if update is not None:
            return dict(set_add(self, *update))
        parsed = parse_insert(text, parameters)
        if parsed is None:
            return dict(original(self, [statement])[0])
        name, item = parsed
        if name not in self.tables:
            message = "Requested resource not found"
            return {"Error": {"Code": "ResourceNotFound", "Message": message}}
        table = self.tables[name]
        keys = [k for k in (table.hash_key_attr, table.range_key_attr) if k is not None]
        if any(k not in item for k in keys):
            message = f"One or more parameter values were invalid: missing the key {keys}"
            return {"TableName": name, "Error": {"Code": "ValidationError", "Message": message}}
        with _INSERT_LOCK:  # the server answers requests on threads: check and put as one
            if self.get_item(name, {k: item[k] for k in keys}) is not None:
                message = "Duplicate primary key exists in table"
                return {"TableName": name, "Error": {"Code": DUPLICATE_ITEM, "Message": message}}
            table.put_item(item)
        return {"TableName": name}

    def batch_execute_statement(
        self: Any, statements: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        from moto.dynamodb.exceptions import MockValidationException

        if not 1 <= len(statements) <= MAX_BATCH_STATEMENTS:  # AWS's own check
            raise MockValidationException(
                f"1 validation error detected: Value at 'statements' failed to satisfy "
                f"constraint: Member must have length between 1 and {MAX_BATCH_STATEMENTS}"
            )
        return [one(self, statement) for statement in statements]

    backend_type.batch_execute_statement = batch_execute_statement


def apply() -> None:
    from moto.dynamodb import models
    from moto.dynamodb.exceptions import TransactionCanceledException
    from moto.dynamodb.models.table import Table

    backend_type = models.DynamoDBBackend
    if getattr(backend_type, _APPLIED, False):
        return
    original = backend_type.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        checked = False
        try:
            reasons = _failed_conditions(self, transact_items)
            checked = True
        except Exception:  # let moto's own code produce its own error for odd input
            reasons = None
        if reasons is not None:
            raise TransactionCanceledException(reasons)
        if reasons is None and checked:
            transact_items = [_without_condition(entry) for entry in transact_items]
        original(self, transact_items)

    _fast_size_checks()
    _partition_queries(Table)
    _partiql_inserts(backend_type)
    models.copy = _CopyWithoutTableBackups(Table)  # type: ignore[assignment]
    backend_type.transact_write_items = transact_write_items  # type: ignore[method-assign]
    setattr(backend_type, _APPLIED, True)
