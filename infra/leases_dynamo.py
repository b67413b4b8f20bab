"""``LeaseStore`` on the DynamoDB leases table (hash key ``lease_key``, type S).

(An adapter: it belongs in ``infra/`` by the layout rule and moves there unchanged.)
"""

from __future__ import annotations

from typing import Any

from infra.dynamo import batch_get, dynamo_errors
from infra.errors import ConditionFailed
from infra.leases import Lease, LeaseLost, lease_key

_HELD_BY_ME = "lease_owner = :me"
_FREE_OR_MINE = (
    "attribute_not_exists(lease_key) OR attribute_not_exists(lease_owner)"
    " OR lease_owner = :me OR lease_expires_ms < :now"
)


class DynamoLeaseStore:
    def __init__(self, dynamodb_client: Any, table: str) -> None:
        self._ddb = dynamodb_client
        self.table = table

    @staticmethod
    def _lease(item: dict[str, Any]) -> Lease:
        return Lease(
            stream=item["stream"]["S"],
            shard_id=item["shard_id"]["S"],
            owner=item["lease_owner"]["S"] if "lease_owner" in item else None,
            expires_ms=int(item.get("lease_expires_ms", {}).get("N", "0")),
            checkpoint=item["checkpoint"]["S"] if "checkpoint" in item else None,
            finished=bool(item.get("finished", {}).get("BOOL", False)),
        )

    def get_many(self, stream: str, shard_ids: list[str]) -> dict[str, Lease]:
        keys = [{"lease_key": {"S": lease_key(stream, s)}} for s in sorted(set(shard_ids))]
        leases = (
            self._lease(i) for i in batch_get(self._ddb, self.table, keys, ConsistentRead=True)
        )
        return {lease.shard_id: lease for lease in leases}

    def _update(
        self,
        what: str,
        lease_or_key: tuple[str, str],
        expression: str,
        condition: str,
        values: dict[str, Any],
    ) -> Lease | None:
        stream, shard_id = lease_or_key
        try:
            with dynamo_errors(self.table, what):
                out = self._ddb.update_item(
                    TableName=self.table,
                    Key={"lease_key": {"S": lease_key(stream, shard_id)}},
                    UpdateExpression=expression,
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#stream": "stream"},
                    ExpressionAttributeValues={
                        ":stream": {"S": stream},
                        ":shard": {"S": shard_id},
                        **values,
                    },
                    ReturnValues="ALL_NEW",
                )
        except ConditionFailed:
            return None
        return self._lease(out["Attributes"])

    def acquire(
        self, stream: str, shard_id: str, owner: str, now_ms: int, duration_ms: int
    ) -> Lease | None:
        return self._update(
            "UpdateItem (acquire lease)",
            (stream, shard_id),
            "SET #stream = :stream, shard_id = :shard, lease_owner = :me,"
            " lease_expires_ms = :expires",
            _FREE_OR_MINE,
            {
                ":me": {"S": owner},
                ":now": {"N": str(now_ms)},
                ":expires": {"N": str(now_ms + duration_ms)},
            },
        )

    def steal(
        self, stream: str, shard_id: str, victim: str, owner: str, now_ms: int, duration_ms: int
    ) -> Lease | None:
        return self._update(
            "UpdateItem (steal lease)",
            (stream, shard_id),
            "SET #stream = :stream, shard_id = :shard, lease_owner = :me,"
            " lease_expires_ms = :expires",
            "lease_owner = :victim",
            {
                ":me": {"S": owner},
                ":victim": {"S": victim},
                ":expires": {"N": str(now_ms + duration_ms)},
            },
        )

    def renew(self, lease: Lease, now_ms: int, duration_ms: int) -> Lease:
        renewed = self._update(
            "UpdateItem (renew lease)",
            (lease.stream, lease.shard_id),
            "SET #stream = :stream, shard_id = :shard, lease_expires_ms = :expires",
            _HELD_BY_ME,
            {":me": {"S": lease.owner or ""}, ":expires": {"N": str(now_ms + duration_ms)}},
        )
        if renewed is None:
            raise LeaseLost(f"lease on {lease.stream}/{lease.shard_id} was taken over")
        return renewed

    def checkpoint(
        self, lease: Lease, sequence: str | None, now_ms: int, duration_ms: int, *, finished: bool
    ) -> Lease:
        expression = "SET #stream = :stream, shard_id = :shard, lease_expires_ms = :expires"
        values: dict[str, Any] = {
            ":me": {"S": lease.owner or ""},
            ":expires": {"N": str(now_ms + duration_ms)},
        }
        if sequence is not None:
            expression += ", checkpoint = :checkpoint"
            values[":checkpoint"] = {"S": sequence}
        if finished:
            expression += ", finished = :finished"
            values[":finished"] = {"BOOL": True}
        updated = self._update(
            "UpdateItem (checkpoint)",
            (lease.stream, lease.shard_id),
            expression,
            _HELD_BY_ME,
            values,
        )
        if updated is None:
            raise LeaseLost(
                f"lease on {lease.stream}/{lease.shard_id} was taken over; checkpoint "
                f"{sequence} not written"
            )
        return updated

    def release(self, lease: Lease) -> None:
        self._update(
            "UpdateItem (release lease)",
            (lease.stream, lease.shard_id),
            "SET #stream = :stream, shard_id = :shard, lease_expires_ms = :zero REMOVE lease_owner",
            _HELD_BY_ME,
            {":me": {"S": lease.owner or ""}, ":zero": {"N": "0"}},
        )
