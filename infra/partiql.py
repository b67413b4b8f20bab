"""PartiQL statements of two fixed shapes: ``INSERT``, the one batched *conditional* put that
DynamoDB bills at 1x, and ``UPDATE … SET a = set_add(a, ?)``, a batched add to a string set.

``TransactWriteItems`` is the only other way to make many conditional writes in one request, and
it bills each item twice; ``BatchWriteItem`` takes no condition. ``BatchExecuteStatement`` runs
up to ``MAX_BATCH_STATEMENTS`` statements a request, each billed as its own write, and an
``INSERT`` of a key that exists fails that statement alone with ``DuplicateItem``: a
conditional put by another name. (For ``pik``'s index: see the cost notes in ``docs/index.md``.)

The statements name every attribute and pass every value as a parameter::

    INSERT INTO "events" VALUE {'event_id': ?, 'item': ?, 'status': ?}

so any value (a ``'`` in a source name, a set, a map) travels as an ``AttributeValue`` and no
text is ever quoted into PartiQL. The update names its attribute and the item's key the same
way::

    UPDATE "events" SET "dup_occurrences" = set_add("dup_occurrences", ?)
    WHERE "event_id" = ? AND "item" = ?

An ``UPDATE`` whose ``WHERE`` matches no item fails that statement alone with
``ConditionalCheckFailed`` (it never creates one). ``parse_insert`` and ``parse_set_add`` read
back exactly these shapes, for the capacity model (``infra.capacity``) and the emulator fix
(``infra.moto_fixes``); other statements are not ours and they return None.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "CONDITION_FAILED",
    "DUPLICATE_ITEM",
    "MAX_BATCH_STATEMENTS",
    "insert_statement",
    "parse_insert",
    "parse_set_add",
    "set_add_statement",
]

MAX_BATCH_STATEMENTS = 25  # AWS's limit for one BatchExecuteStatement
DUPLICATE_ITEM = "DuplicateItem"  # the error code of an INSERT whose key exists
CONDITION_FAILED = "ConditionalCheckFailed"  # the error code of an UPDATE of no item

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")  # a DynamoDB table name
_INSERT = re.compile(r'^INSERT INTO "([A-Za-z0-9_.\-]+)" VALUE \{(.*)\}$', re.DOTALL)
_FIELD = re.compile(r"'((?:[^']|'')*)': \?")
_ATTRIBUTE = re.compile(r"^[A-Za-z0-9_]+$")
_SET_ADD = re.compile(
    r'^UPDATE "([A-Za-z0-9_.\-]+)" SET "(\w+)" = set_add\("(\w+)", \?\) '
    r'WHERE "(\w+)" = \?(?: AND "(\w+)" = \?)?$'
)


def _quoted(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def insert_statement(table: str, item: Mapping[str, Any]) -> dict[str, Any]:
    """A ``BatchExecuteStatement`` entry inserting ``item`` (low-level ``AttributeValue``s)."""
    if not _NAME.match(table):
        raise ValueError(f"not a DynamoDB table name: {table!r}")
    names = list(item)
    fields = ", ".join(f"{_quoted(n)}: ?" for n in names)
    return {
        "Statement": f'INSERT INTO "{table}" VALUE {{{fields}}}',
        "Parameters": [item[n] for n in names],
    }


def parse_insert(
    statement: str, parameters: Sequence[Mapping[str, Any]] | None
) -> tuple[str, dict[str, Any]] | None:
    """(table, item) of a statement ``insert_statement`` made, else None."""
    match = _INSERT.match(statement.strip())
    if match is None:
        return None
    table, body = match.groups()
    fields = _FIELD.findall(body)
    rebuilt = ", ".join(f"'{f}': ?" for f in fields)
    values = list(parameters or ())
    if rebuilt != body.strip() or len(fields) != len(values):
        return None
    return table, {f.replace("''", "'"): dict(v) for f, v in zip(fields, values, strict=True)}


def set_add_statement(
    table: str, key: Mapping[str, Any], attribute: str, values: Mapping[str, Any]
) -> dict[str, Any]:
    """A ``BatchExecuteStatement`` entry adding ``values`` (a set ``AttributeValue``) to the set
    ``attribute`` of the item with ``key`` (its key attributes, ``AttributeValue``s)."""
    names = list(key)
    if not _NAME.match(table) or len(names) not in (1, 2):
        raise ValueError(f"not a table name and a table key: {table!r}, {names!r}")
    if not all(_ATTRIBUTE.match(n) for n in (attribute, *names)):
        raise ValueError(f"attribute names must be plain words: {[attribute, *names]!r}")
    where = " AND ".join(f'"{n}" = ?' for n in names)
    return {
        "Statement": (
            f'UPDATE "{table}" SET "{attribute}" = set_add("{attribute}", ?) WHERE {where}'
        ),
        "Parameters": [values, *(key[n] for n in names)],
    }


def parse_set_add(
    statement: str, parameters: Sequence[Mapping[str, Any]] | None
) -> tuple[str, dict[str, Any], str, dict[str, Any]] | None:
    """(table, key, attribute, values) of a statement ``set_add_statement`` made, else None."""
    match = _SET_ADD.match(statement.strip())
    if match is None:
        return None
    table, attribute, again, *names = match.groups()
    names = [n for n in names if n is not None]
    values = list(parameters or ())
    if attribute != again or len(values) != 1 + len(names):
        return None
    key = {n: dict(v) for n, v in zip(names, values[1:], strict=True)}
    return table, key, attribute, dict(values[0])
