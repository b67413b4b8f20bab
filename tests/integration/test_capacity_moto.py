"""The capacity model hooked onto a real boto3 client against the embedded AWS."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from infra.capacity import CapacityModel, TableSpec
from infra.partiql import CONDITION_FAILED, DUPLICATE_ITEM, insert_statement, set_add_statement
from pik.kit import build_kit
from pik.settings import Settings


def _table(settings: Settings) -> tuple[object, TableSpec]:
    dynamodb = build_kit(settings).clients.dynamodb()
    name = f"cap-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "g", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
    spec = TableSpec.from_description(dynamodb.describe_table(TableName=name)["Table"])
    return dynamodb, spec


def test_requests_are_priced_through_the_client_hook(settings: Settings) -> None:
    dynamodb, spec = _table(settings)
    model = CapacityModel([spec], clock=lambda: 0.0)
    client = model.install(dynamodb)
    big = {"S": "x" * 3000}
    client.put_item(TableName=spec.name, Item={"pk": {"S": "a"}, "g": {"S": "h"}, "v": big})
    client.put_item(TableName=spec.name, Item={"pk": {"S": "a"}, "g": {"S": "k"}, "v": big})
    client.get_item(TableName=spec.name, Key={"pk": {"S": "a"}})
    client.query(
        TableName=spec.name,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "a"}},
        ConsistentRead=True,
    )
    usage = model.report()[spec.name]
    # table: 3 + 3 (the replace costs the larger image); index: put h, then delete h + put k
    assert usage["wru_by_target"] == {spec.name: 6, f"{spec.name}:by_g": 3}
    assert usage["rru"] == 0.5 + 1  # eventually consistent GetItem, consistent Query
    assert usage["requests"] == {"PutItem": 2, "GetItem": 1, "Query": 1}
    assert model.stored_bytes(spec.name)[f"{spec.name}:by_g"] == len("pk") + 1 + 1 + 1 + 100
    # per partition key: the table's under "a", the index's under each g it was written to
    assert model.write_units_by_key(spec.name) == {"a": 6}
    assert model.write_units_by_key(f"{spec.name}:by_g") == {"h": 2, "k": 1}


def test_strict_mode_throttles_a_hot_partition_key_with_aws_error(settings: Settings) -> None:
    dynamodb, spec = _table(settings)
    now = [0.0]
    model = CapacityModel([spec], strict=True, clock=lambda: now[0], wcu_limit=3)
    client = model.install(dynamodb)
    for i in range(3):
        client.put_item(TableName=spec.name, Item={"pk": {"S": f"p{i}"}, "g": {"S": "hot"}})
    with pytest.raises(ClientError) as raised:
        client.put_item(TableName=spec.name, Item={"pk": {"S": "p9"}, "g": {"S": "hot"}})
    assert raised.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert "by_g" in str(raised.value)
    assert "Item" not in client.get_item(TableName=spec.name, Key={"pk": {"S": "p9"}})
    now[0] = 1.0  # the next second has its budget back
    client.put_item(TableName=spec.name, Item={"pk": {"S": "p9"}, "g": {"S": "hot"}})
    assert model.throttled == 1


def test_partiql_inserts_are_conditional_puts_priced_once(settings: Settings) -> None:
    """On the embedded AWS (with infra.moto_fixes): an INSERT of a key that exists fails that
    statement alone with DuplicateItem and leaves the item as it was; each INSERT is priced
    as one put at 1x, not 2x as in a transaction."""
    dynamodb, spec = _table(settings)
    model = CapacityModel([spec], clock=lambda: 0.0)
    client = model.install(dynamodb)

    def item(pk: str, g: str) -> dict[str, dict[str, str]]:
        return {"pk": {"S": pk}, "g": {"S": g}, "v": {"S": "x" * 1500}}

    first = client.batch_execute_statement(
        Statements=[insert_statement(spec.name, item(f"k{n}", "a")) for n in range(3)]
    )
    assert [r.get("Error") for r in first["Responses"]] == [None] * 3
    again = client.batch_execute_statement(
        Statements=[
            insert_statement(spec.name, item("k1", "changed")),
            insert_statement(spec.name, item("k9", "a")),
        ]
    )
    assert [r.get("Error", {}).get("Code") for r in again["Responses"]] == [DUPLICATE_ITEM, None]
    kept = client.get_item(TableName=spec.name, Key={"pk": {"S": "k1"}})["Item"]
    assert kept["g"] == {"S": "a"}  # the duplicate overwrote nothing
    usage = model.report()[spec.name]
    assert usage["wru_by_target"][spec.name] == 5 * 2  # 1.5 KB items: 2 WRU each, 1x
    # the index entries of the four that were written; the DuplicateItem wrote none
    assert usage["wru_by_target"][f"{spec.name}:by_g"] == 4
    assert usage["requests"]["BatchExecuteStatement"] == 2
    with pytest.raises(ClientError, match="length between 1 and 25"):
        client.batch_execute_statement(
            Statements=[insert_statement(spec.name, item(f"m{n}", "a")) for n in range(26)]
        )


def test_partiql_set_adds_grow_a_set_and_never_create_an_item(settings: Settings) -> None:
    """On the embedded AWS (with infra.moto_fixes): ``set_add`` creates the set on its first
    add and merges later ones; an UPDATE of a key that is not there fails that statement alone
    with ConditionalCheckFailed and creates nothing. Each is priced as one 1x write."""
    dynamodb, spec = _table(settings)
    model = CapacityModel([spec], clock=lambda: 0.0)
    client = model.install(dynamodb)
    client.put_item(TableName=spec.name, Item={"pk": {"S": "k1"}, "g": {"S": "a"}})

    def add(pk: str, *values: str) -> dict[str, object]:
        return set_add_statement(spec.name, {"pk": {"S": pk}}, "dups", {"SS": list(values)})

    out = client.batch_execute_statement(Statements=[add("k1", "x"), add("nope", "x")])
    assert [r.get("Error", {}).get("Code") for r in out["Responses"]] == [None, CONDITION_FAILED]
    client.batch_execute_statement(Statements=[add("k1", "y", "x")])
    kept = client.get_item(TableName=spec.name, Key={"pk": {"S": "k1"}})["Item"]
    assert sorted(kept["dups"]["SS"]) == ["x", "y"]
    assert "Item" not in client.get_item(TableName=spec.name, Key={"pk": {"S": "nope"}})
    usage = model.report()[spec.name]
    assert usage["requests"]["BatchExecuteStatement"] == 2
    # the put, and the two adds that applied (small items: 1 WRU each); the KEYS_ONLY index
    # projects no set, so an add writes no index entry
    assert usage["wru_by_target"][spec.name] == 1 + 2 + 1  # the failed one is priced too
    assert usage["wru_by_target"].get(f"{spec.name}:by_g", 0) == 1  # the put's entry
