"""The one PartiQL shape the kit writes: every attribute named, every value a parameter."""

from __future__ import annotations

import pytest

from infra.partiql import insert_statement, parse_insert, parse_set_add, set_add_statement


def test_an_insert_names_every_attribute_and_passes_every_value() -> None:
    item = {
        "event_id": {"S": "e1"},
        "it's": {"S": "a 'quoted' value"},
        "tags": {"SS": ["a", "b"]},
        "m": {"M": {"n": {"N": "1"}}},
    }
    entry = insert_statement("pik-events", item)
    assert entry["Statement"] == (
        "INSERT INTO \"pik-events\" VALUE {'event_id': ?, 'it''s': ?, 'tags': ?, 'm': ?}"
    )
    assert "quoted" not in entry["Statement"]  # values never become PartiQL text
    assert parse_insert(entry["Statement"], entry["Parameters"]) == ("pik-events", item)


@pytest.mark.parametrize(
    ("statement", "parameters"),
    [
        ('SELECT * FROM "t" WHERE event_id = ?', [{"S": "x"}]),
        ("INSERT INTO \"t\" VALUE {'a': 'literal'}", []),
        ("INSERT INTO \"t\" VALUE {'a': ?, 'b': ?}", [{"S": "x"}]),  # a value missing
        ('UPDATE "t" SET a = ? WHERE event_id = ?', [{"S": "x"}, {"S": "y"}]),
    ],
)
def test_statements_of_another_shape_are_not_read_as_ours(
    statement: str, parameters: list[dict[str, str]]
) -> None:
    assert parse_insert(statement, parameters) is None
    assert parse_set_add(statement, parameters) is None


def test_a_set_add_names_the_set_and_the_key_and_passes_every_value() -> None:
    key = {"event_id": {"S": "e'1"}, "item": {"S": "event"}}
    entry = set_add_statement("pik-events", key, "dup_occurrences", {"SS": ["http:r:1"]})
    assert entry["Statement"] == (
        'UPDATE "pik-events" SET "dup_occurrences" = set_add("dup_occurrences", ?) '
        'WHERE "event_id" = ? AND "item" = ?'
    )
    assert "e'1" not in entry["Statement"]
    assert parse_set_add(entry["Statement"], entry["Parameters"]) == (
        "pik-events",
        key,
        "dup_occurrences",
        {"SS": ["http:r:1"]},
    )
    assert parse_insert(entry["Statement"], entry["Parameters"]) is None
    one = set_add_statement("t", {"pk": {"S": "a"}}, "s", {"SS": ["x"]})
    assert parse_set_add(one["Statement"], one["Parameters"]) == (
        "t",
        {"pk": {"S": "a"}},
        "s",
        {"SS": ["x"]},
    )


@pytest.mark.parametrize(
    ("statement", "parameters"),
    [
        ('UPDATE "t" SET "a" = set_add("b", ?) WHERE "pk" = ?', [{"SS": ["x"]}, {"S": "k"}]),
        ('UPDATE "t" SET "a" = set_add("a", ?) WHERE "pk" = ?', [{"SS": ["x"]}]),
        ('UPDATE "t" SET "a" = set_add("a", <<\'x\'>>) WHERE "pk" = ?', [{"S": "k"}]),
    ],
)
def test_set_adds_of_another_shape_are_not_read_as_ours(
    statement: str, parameters: list[dict[str, object]]
) -> None:
    assert parse_set_add(statement, parameters) is None


def test_a_set_add_of_a_name_that_is_not_plain_is_refused() -> None:
    with pytest.raises(ValueError, match="plain words"):
        set_add_statement("t", {"pk": {"S": "a"}}, 'a" = 1, "b', {"SS": ["x"]})


def test_a_table_name_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="table name"):
        insert_statement('t" VALUE {}; --', {"a": {"S": "x"}})
