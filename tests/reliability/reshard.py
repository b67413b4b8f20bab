"""Resharding a stream while the tap reads it, on a faithful Kinesis (npm kinesis-local:
a split or merge closes the parents, which stay readable and end with ``ChildShards``; moto
keeps writing to closed parents and never ends them, see shared/EMULATORS.md)."""

from __future__ import annotations

import time
from typing import Any


def wait_active(kinesis: Any, stream: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        if summary["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.05)
    raise TimeoutError(f"stream {stream} not ACTIVE after {timeout:.0f} s")


def open_shards(kinesis: Any, stream: str) -> list[dict[str, Any]]:
    """The stream's open shards (no ending sequence number), in hash key order."""
    shards = [
        s
        for page in kinesis.get_paginator("list_shards").paginate(StreamName=stream)
        for s in page["Shards"]
        if "EndingSequenceNumber" not in s["SequenceNumberRange"]
    ]
    return sorted(shards, key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))


def split_first(kinesis: Any, stream: str) -> str:
    """Split the lowest open shard at the middle of its hash range; its id."""
    shard = open_shards(kinesis, stream)[0]
    low = int(shard["HashKeyRange"]["StartingHashKey"])
    high = int(shard["HashKeyRange"]["EndingHashKey"])
    kinesis.split_shard(
        StreamName=stream, ShardToSplit=shard["ShardId"], NewStartingHashKey=str((low + high) // 2)
    )
    wait_active(kinesis, stream)
    return str(shard["ShardId"])


def merge_last_pair(kinesis: Any, stream: str) -> str:
    """Merge the two highest adjacent open shards (after a split: a child and an original)."""
    *_, lower, upper = open_shards(kinesis, stream)
    kinesis.merge_shards(
        StreamName=stream, ShardToMerge=lower["ShardId"], AdjacentShardToMerge=upper["ShardId"]
    )
    wait_active(kinesis, stream)
    return f"{lower['ShardId']}+{upper['ShardId']}"
