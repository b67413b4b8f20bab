"""The embedded AWS over real HTTP: serialized writes, long polls that block nobody, persistence."""

from __future__ import annotations

import http.client
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from infra.local import JOURNAL_MAGIC, JOURNAL_NAME, EmbeddedAws

REGION = "us-east-1"
NO_RETRIES = Config(retries={"max_attempts": 1}, max_pool_connections=32)
ALL_BYTES = bytes(range(256))
T = TypeVar("T")


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedAws]:
    with EmbeddedAws(port=0) as aws:
        yield aws


def client(aws: EmbeddedAws, service: str) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=aws.endpoint_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=NO_RETRIES,
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def race(threads: int, rounds: Sequence[T], attempt: Callable[[int, T], None]) -> None:
    """Every thread runs ``attempt(thread_index, round)``, all released together each round."""
    barrier = threading.Barrier(threads, timeout=60)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            for round_ in rounds:
                barrier.wait()
                attempt(index, round_)
        except threading.BrokenBarrierError:
            pass  # another thread failed; its error is the one to report
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    # Switching threads every 0.1 ms (not every 5 ms) lets a race inside moto show up
    # within a few hundred requests; client and server threads share this process's GIL.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    try:
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    if errors:
        raise errors[0]


def create_table(dynamodb: Any, name: str) -> None:
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def create_stream(kinesis: Any, name: str) -> str:
    kinesis.create_stream(StreamName=name, ShardCount=1)
    return str(kinesis.list_shards(StreamName=name)["Shards"][0]["ShardId"])


def read_shard(kinesis: Any, stream: str, shard_id: str, expected: int) -> list[dict[str, Any]]:
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records: list[dict[str, Any]] = []
    for _ in range(50):
        page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
        records.extend(page["Records"])
        iterator = page["NextShardIterator"]
        if not page["Records"] and len(records) >= expected:
            break
    return records


def test_racing_conditional_puts_have_one_winner_per_key(server: EmbeddedAws) -> None:
    dynamodb = client(server, "dynamodb")
    table = unique("race")
    create_table(dynamodb, table)
    keys = [f"key-{i}" for i in range(50)]
    wins: Counter[str] = Counter()
    winner_of: dict[str, str] = {}
    lock = threading.Lock()

    def attempt(index: int, key: str) -> None:
        writer = f"writer-{index}"
        try:
            dynamodb.put_item(
                TableName=table,
                Item={"pk": {"S": key}, "writer": {"S": writer}},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ConditionalCheckFailedException"
            return
        with lock:
            wins[key] += 1
            winner_of[key] = writer

    race(16, keys, attempt)

    assert {key: n for key, n in wins.items() if n > 1} == {}, "two writers won one key"
    assert set(wins) == set(keys)
    for key in keys:
        item = dynamodb.get_item(TableName=table, Key={"pk": {"S": key}})["Item"]
        assert item["writer"]["S"] == winner_of[key]


def test_racing_if_none_match_puts_have_one_winner_per_key(server: EmbeddedAws) -> None:
    s3 = client(server, "s3")
    bucket = unique("race")
    s3.create_bucket(Bucket=bucket)
    keys = [f"objects/{i}" for i in range(40)]
    wins: Counter[str] = Counter()
    winner_of: dict[str, bytes] = {}
    lock = threading.Lock()

    def attempt(index: int, key: str) -> None:
        body = f"{key} by writer {index}".encode()
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "PreconditionFailed"
            return
        with lock:
            wins[key] += 1
            winner_of[key] = body

    race(16, keys, attempt)

    assert {key: n for key, n in wins.items() if n > 1} == {}, "two writers won one key"
    assert set(wins) == set(keys)
    for key in keys:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == winner_of[key]


def test_concurrent_put_records_on_one_shard_lose_nothing(server: EmbeddedAws) -> None:
    kinesis = client(server, "kinesis")
    stream = unique("race")
    shard_id = create_stream(kinesis, stream)
    threads, batches, per_batch = 8, 20, 50

    def attempt(index: int, batch: int) -> None:
        records = [
            {"Data": f"{index}:{batch}:{n}".encode(), "PartitionKey": f"pk-{index}"}
            for n in range(per_batch)
        ]
        assert kinesis.put_records(StreamName=stream, Records=records)["FailedRecordCount"] == 0

    race(threads, range(batches), attempt)

    expected = Counter(
        f"{i}:{b}:{n}".encode()
        for i in range(threads)
        for b in range(batches)
        for n in range(per_batch)
    )
    records = read_shard(kinesis, stream, shard_id, sum(expected.values()))
    assert Counter(record["Data"] for record in records) == expected
    assert len({record["SequenceNumber"] for record in records}) == len(records)
    for record in records:
        assert record["PartitionKey"] == f"pk-{record['Data'].split(b':')[0].decode()}"


def test_transactions_take_aws_limit_of_100_items(server: EmbeddedAws) -> None:
    dynamodb = client(server, "dynamodb")
    table = unique("txn")
    create_table(dynamodb, table)

    def puts(count: int, prefix: str) -> list[dict[str, Any]]:
        return [
            {"Put": {"TableName": table, "Item": {"pk": {"S": f"{prefix}-{i}"}}}}
            for i in range(count)
        ]

    dynamodb.transact_write_items(TransactItems=puts(100, "ok"))
    assert dynamodb.scan(TableName=table, Select="COUNT")["Count"] == 100
    gets = [{"Get": {"TableName": table, "Key": {"pk": {"S": f"ok-{i}"}}}} for i in range(100)]
    answers = dynamodb.transact_get_items(TransactItems=gets)["Responses"]
    assert [answer["Item"]["pk"]["S"] for answer in answers] == [f"ok-{i}" for i in range(100)]

    with pytest.raises(ClientError) as refused:
        dynamodb.transact_write_items(TransactItems=puts(101, "too-many"))
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert dynamodb.scan(TableName=table, Select="COUNT")["Count"] == 100


@pytest.mark.parametrize("wait_from", ["request", "queue default"])
def test_long_poll_blocks_nobody_and_returns_on_send(server: EmbeddedAws, wait_from: str) -> None:
    sqs, dynamodb = client(server, "sqs"), client(server, "dynamodb")
    attributes = {"ReceiveMessageWaitTimeSeconds": "5"} if wait_from == "queue default" else {}
    queue_url = sqs.create_queue(QueueName=unique("poll"), Attributes=attributes)["QueueUrl"]
    table = unique("poll")
    create_table(dynamodb, table)
    received: list[Any] = []
    receive_args = {"WaitTimeSeconds": 5} if wait_from == "request" else {}

    def receive() -> None:
        started = time.monotonic()
        answer = sqs.receive_message(QueueUrl=queue_url, **receive_args)
        received.append((answer.get("Messages", []), time.monotonic() - started))

    waiter = threading.Thread(target=receive)
    waiter.start()
    time.sleep(0.3)  # the receive is now waiting

    started = time.monotonic()
    for i in range(20):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"item-{i}"}})
    assert time.monotonic() - started < 2.0
    assert waiter.is_alive(), "the receive returned before any message was sent"

    sqs.send_message(QueueUrl=queue_url, MessageBody="wake up")
    waiter.join(timeout=10)
    messages, waited = received[0]
    assert [message["Body"] for message in messages] == ["wake up"]
    assert waited < 3.0


def test_query_protocol_long_poll_is_emulated_too(server: EmbeddedAws) -> None:
    sqs = client(server, "sqs")
    queue_url = sqs.create_queue(QueueName=unique("query"))["QueueUrl"]
    endpoint = urlsplit(server.endpoint_url)
    form = {"Action": "ReceiveMessage", "QueueUrl": queue_url, "WaitTimeSeconds": "3"}
    auth = (
        "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/sqs/aws4_request, "
        "SignedHeaders=host, Signature=0"
    )
    threading.Timer(0.5, lambda: sqs.send_message(QueueUrl=queue_url, MessageBody="late")).start()

    started = time.monotonic()
    connection = http.client.HTTPConnection(endpoint.hostname or "", endpoint.port, timeout=10)
    connection.request(
        "POST",
        "/",
        body=urlencode(form),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Authorization": auth},
    )
    response = connection.getresponse()
    body = response.read()
    connection.close()

    assert response.status == 200
    assert b"<Body>late</Body>" in body
    assert 0.4 < time.monotonic() - started < 2.5


def test_state_survives_a_restart_on_the_same_data_dir(tmp_path: Path) -> None:
    bucket, table, queue, stream = unique("keep"), unique("keep"), unique("keep"), unique("keep")
    items = [{"pk": {"S": f"item-{i}"}, "payload": {"B": ALL_BYTES[i:]}} for i in range(5)]
    sent = [(f"pk-{i % 3}", f"record {i}".encode() + ALL_BYTES) for i in range(30)]

    with EmbeddedAws(port=0, data_dir=tmp_path) as first:
        s3, dynamodb = client(first, "s3"), client(first, "dynamodb")
        sqs, kinesis = client(first, "sqs"), client(first, "kinesis")
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="raw/all-bytes.bin", Body=ALL_BYTES)
        create_table(dynamodb, table)
        for item in items:
            dynamodb.put_item(TableName=table, Item=item)
        queue_url = sqs.create_queue(QueueName=queue)["QueueUrl"]
        sqs.send_message(
            QueueUrl=queue_url,
            MessageBody="replay me",
            MessageAttributes={"kind": {"DataType": "String", "StringValue": "test"}},
        )
        shard_id = create_stream(kinesis, stream)
        kinesis.put_records(
            StreamName=stream, Records=[{"PartitionKey": k, "Data": d} for k, d in sent]
        )
        before = read_shard(kinesis, stream, shard_id, len(sent))

        journal_size = (tmp_path / JOURNAL_NAME).stat().st_size
        s3.get_object(Bucket=bucket, Key="raw/all-bytes.bin")["Body"].read()
        dynamodb.scan(TableName=table)
        sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])
        assert (tmp_path / JOURNAL_NAME).stat().st_size == journal_size, "reads were journaled"

    with EmbeddedAws(port=0, data_dir=tmp_path) as second:
        s3, dynamodb = client(second, "s3"), client(second, "dynamodb")
        sqs, kinesis = client(second, "sqs"), client(second, "kinesis")

        assert s3.get_object(Bucket=bucket, Key="raw/all-bytes.bin")["Body"].read() == ALL_BYTES
        stored = dynamodb.scan(TableName=table)["Items"]
        assert sorted(stored, key=lambda item: item["pk"]["S"]) == items

        queue_url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )["Messages"]
        assert [message["Body"] for message in messages] == ["replay me"]
        assert messages[0]["MessageAttributes"]["kind"]["StringValue"] == "test"

        after = read_shard(kinesis, stream, shard_id, len(sent))
        assert [(r["PartitionKey"], r["Data"]) for r in after] == sent
        assert [r["SequenceNumber"] for r in after] == [r["SequenceNumber"] for r in before]


def test_torn_journal_tail_is_dropped_and_appends_continue(tmp_path: Path) -> None:
    bucket = unique("torn")
    with EmbeddedAws(port=0, data_dir=tmp_path) as first:
        client(first, "s3").create_bucket(Bucket=bucket)
    with (tmp_path / JOURNAL_NAME).open("ab") as journal:
        journal.write(b"\x00\x00\x01")  # a crash half-way through a record header

    with EmbeddedAws(port=0, data_dir=tmp_path) as second:
        client(second, "s3").put_object(Bucket=bucket, Key="after", Body=b"tail")
    with EmbeddedAws(port=0, data_dir=tmp_path) as third:
        assert client(third, "s3").get_object(Bucket=bucket, Key="after")["Body"].read() == b"tail"


def test_multipart_upload_survives_a_restart(tmp_path: Path) -> None:
    bucket = unique("parts")
    parts = [ALL_BYTES * (5 * 1024 * 1024 // len(ALL_BYTES)), b"the last part"]  # 5 MiB minimum
    with EmbeddedAws(port=0, data_dir=tmp_path) as first:
        s3 = client(first, "s3")
        s3.create_bucket(Bucket=bucket)
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
        uploaded = [
            {
                "PartNumber": number,
                "ETag": s3.upload_part(
                    Bucket=bucket, Key="big", PartNumber=number, UploadId=upload_id, Body=body
                )["ETag"],
            }
            for number, body in enumerate(parts, start=1)
        ]
        s3.complete_multipart_upload(
            Bucket=bucket, Key="big", UploadId=upload_id, MultipartUpload={"Parts": uploaded}
        )
        etag = s3.head_object(Bucket=bucket, Key="big")["ETag"]

    with EmbeddedAws(port=0, data_dir=tmp_path) as second:
        stored = client(second, "s3").get_object(Bucket=bucket, Key="big")
        assert stored["Body"].read() == b"".join(parts)
        assert stored["ETag"] == etag


def test_reset_empties_the_journal(tmp_path: Path) -> None:
    bucket = unique("reset")
    with EmbeddedAws(port=0, data_dir=tmp_path) as first:
        client(first, "s3").create_bucket(Bucket=bucket)
        endpoint = urlsplit(first.endpoint_url)
        connection = http.client.HTTPConnection(endpoint.hostname or "", endpoint.port)
        connection.request("POST", "/moto-api/reset")
        assert connection.getresponse().status == 200
        connection.close()
        assert (tmp_path / JOURNAL_NAME).read_bytes() == JOURNAL_MAGIC
    with EmbeddedAws(port=0, data_dir=tmp_path) as second:
        assert client(second, "s3").list_buckets()["Buckets"] == []
