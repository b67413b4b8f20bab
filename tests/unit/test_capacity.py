"""The capacity model's pricing rules, pinned against the DynamoDB documentation's examples."""

from __future__ import annotations

import pytest

from infra.capacity import (
    CapacityModel,
    IndexSpec,
    TableSpec,
    item_size,
    number_size,
    read_units,
    write_units,
)

KB = 1024


def test_item_size_counts_names_and_values_as_in_the_docs() -> None:
    # "shirt-color" = "R" and "shirt-size" = "M": 23 bytes (DynamoDB developer guide)
    assert item_size({"shirt-color": {"S": "R"}, "shirt-size": {"S": "M"}}) == 23


def test_number_size_is_one_byte_per_two_significant_digits_plus_one() -> None:
    assert number_size("7") == 2
    assert number_size("1234") == 3
    assert number_size("12345") == 4
    assert number_size("1000000") == 2  # trailing zeros are trimmed
    assert number_size("-0.00123") == 3  # leading zeros are trimmed


def test_lists_and_maps_cost_three_bytes_plus_one_per_element() -> None:
    assert item_size({"l": {"L": []}}) == 1 + 3
    assert item_size({"m": {"M": {"ab": {"S": "xyz"}}}}) == 1 + 3 + (2 + 3 + 1)
    assert item_size({"l": {"L": [{"BOOL": True}, {"NULL": True}]}}) == 1 + 3 + 2 * (1 + 1)
    assert item_size({"s": {"SS": ["ab", "c"]}}) == 1 + 3


def test_capacity_units_round_up_as_in_the_docs() -> None:
    # an 8 KB item: 2 RCU strongly consistent, 1 eventually consistent
    assert read_units(8 * KB, consistent=True) == 2
    assert read_units(8 * KB, consistent=False) == 1
    # a 2 KB item: 2 WCU for a standard write; 3.5 KB rounds up to 4
    assert write_units(2 * KB) == 2
    assert write_units(int(3.5 * KB)) == 4
    assert write_units(1) == 1
    assert read_units(1, consistent=True) == 1


SPEC = TableSpec(
    "t",
    "pk",
    "sk",
    (
        IndexSpec("all", "g", "sk", "ALL"),
        IndexSpec("keys", "g", None, "KEYS_ONLY"),
        IndexSpec("inc", "h", None, "INCLUDE", ("small",)),
    ),
)


def _item(g: str, payload: int = 2000) -> dict[str, dict[str, str]]:
    return {
        "pk": {"S": "a"},
        "sk": {"S": "1"},
        "g": {"S": g},
        "h": {"S": "x"},
        "small": {"S": "s"},
        "big": {"S": "x" * payload},
    }


def test_a_new_item_costs_the_table_and_each_index_by_its_projection() -> None:
    model = CapacityModel([SPEC])
    charges = {t: u for t, _, u in model.write_cost("t", None, _item("g1"))}
    assert charges == {"t": 2, "t:all": 2, "t:keys": 1, "t:inc": 1}
    transactional = model.write_cost("t", None, _item("g1"), transactional=True)
    assert {t: u for t, _, u in transactional}["t"] == 4  # 2x on the table only
    assert {t: u for t, _, u in transactional}["t:all"] == 2


def test_an_update_that_moves_an_index_key_is_a_delete_plus_a_put_on_that_index() -> None:
    model = CapacityModel([SPEC])
    charges = model.write_cost("t", _item("g1"), _item("g2"))
    on_all = [(key, units) for target, key, units in charges if target == "t:all"]
    assert on_all == [("g1", 2), ("g2", 2)]
    assert [u for t, _, u in charges if t == "t:keys"] == [1, 1]
    assert not [t for t, _, _ in charges if t == "t:inc"]  # nothing it projects changed


def test_an_item_without_an_index_key_is_not_written_to_that_index() -> None:
    model = CapacityModel([SPEC])
    item = _item("g1")
    del item["h"]
    assert "t:inc" not in {t for t, _, _ in model.write_cost("t", None, item)}


def test_table_spec_reads_a_describe_table_answer() -> None:
    spec = TableSpec.from_description(
        {
            "TableName": "t",
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "inc",
                    "KeySchema": [{"AttributeName": "h", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["small"]},
                }
            ],
        }
    )
    assert spec == TableSpec("t", "pk", "sk", (IndexSpec("inc", "h", None, "INCLUDE", ("small",)),))


@pytest.mark.parametrize("payload", [10, 5000])
def test_projected_sizes_shrink_with_keys_only(payload: int) -> None:
    model = CapacityModel([SPEC])
    charges = {t: u for t, _, u in model.write_cost("t", None, _item("g", payload))}
    assert charges["t:keys"] == 1
    assert charges["t:all"] == write_units(item_size(_item("g", payload)))
