"""PartiQL ``INSERT`` statements of one fixed shape: the one batched *conditional* write that
DynamoDB bills at 1x.

``TransactWriteItems`` is the only other way to make many conditional writes in one request, and
it bills each item twice; ``BatchWriteItem`` takes no condition. ``BatchExecuteStatement`` runs
up to ``MAX_BATCH_STATEMENTS`` statements a request, each billed as its own write, and an
``INSERT`` of a key that exists fails that statement alone with ``DuplicateItem``: a
conditional put by another name. (For ``pik``'s index: see the cost notes in ``docs/index.md``.)

The statements name every attribute and pass every value as a parameter::

    INSERT INTO "events" VALUE {'event_id': ?, 'item': ?, 'status': ?}

so any value (a ``'`` in a source name, a set, a map) travels as an ``AttributeValue`` and no
text is ever quoted into PartiQL. ``parse_insert`` reads back exactly this shape, for the
capacity model (``infra.capacity``) and the emulator fix (``infra.moto_fixes``); other
statements are not ours and it returns None.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["DUPLICATE_ITEM", "MAX_BATCH_STATEMENTS", "insert_statement", "parse_insert"]

MAX_BATCH_STATEMENTS = 25  # AWS's limit for one BatchExecuteStatement
DUPLICATE_ITEM = "DuplicateItem"  # the error code of an INSERT whose key exists

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")  # a DynamoDB table name
_INSERT = re.compile(r'^INSERT INTO "([A-Za-z0-9_.\-]+)" VALUE \{(.*)\}$', re.DOTALL)
_FIELD = re.compile(r"'((?:[^']|'')*)': \?")


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
