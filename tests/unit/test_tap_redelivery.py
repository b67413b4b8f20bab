"""Redelivery of rejected records: the tap re-reading a rejected record (same shard, sequence
and sub-sequence number) after a restart absorbs it as a redelivery, as it does accepted ones,
instead of counting it rejected a second time."""

from __future__ import annotations

import json

from consumers.tap.binding import binding_from_table
from consumers.tap.decode import RecordDecoder
from consumers.tap.shard import ReaderOptions
from consumers.tap.summary import TapSummary
from consumers.tap.worker import TapOptions, TapWorker
from infra.kinesis import MemoryStream
from infra.leases import Lease, MemoryLeaseStore
from schemas.kpl import aggregate
from tests.unit.support import MemoryKit

BINDING = binding_from_table(
    {"stream": "clicks", "source": "web", "event_type": "$.kind", "idempotency_key": "$.id"}
)


def click(n: int) -> bytes:
    return json.dumps({"id": f"c-{n}", "kind": "click"}).encode()


def run(stream: MemoryStream, leases: MemoryLeaseStore, kit: MemoryKit) -> TapSummary:
    return TapWorker(
        "clicks",
        port=stream,
        leases=leases,
        sink=kit.sink,
        decoder=RecordDecoder(BINDING),
        clock=kit.clock,
        metrics=kit.metrics,
        options=TapOptions(reader=ReaderOptions(min_call_interval_s=0, limit=4)),
    ).run(once=True)


def forget_checkpoints(leases: MemoryLeaseStore) -> None:
    """As if the tap had crashed after ingesting, before any checkpoint was written."""
    for key, lease in list(leases.leases.items()):
        leases.leases[key] = Lease(lease.stream, lease.shard_id)


def test_a_rejected_record_read_again_is_a_redelivery_not_a_second_rejection() -> None:
    stream, leases, kit = MemoryStream("clicks"), MemoryLeaseStore(), MemoryKit()
    for n in range(5):
        stream.put(click(n), "k")
    stream.put(b"not json", "k")
    stream.put(b"not json", "k")  # the same bad bytes again: a second rejected delivery
    (corrupt,) = aggregate([("k", click(10)), ("k", click(11))])
    stream.put(corrupt.data[:-1], "k")  # a corrupt aggregate, quarantined whole
    first = run(stream, leases, kit).totals()
    assert (first["accepted"], first["rejected"], first["redeliveries"]) == (5, 3, 0)
    occurrences = {k: dict(v) for k, v in kit.index.items.items()}
    files = dict(kit.archive.files)

    forget_checkpoints(leases)
    again = run(stream, leases, kit).totals()

    assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, 0, 0)
    assert again["redeliveries"] == 8
    assert again["reasons"] == {}
    assert kit.metrics.counter("RejectedCount") == 3  # counted once, when first read
    assert kit.index.items == occurrences  # the index already had them all
    assert kit.archive.files == files


def test_a_rejected_record_seen_for_the_first_time_still_counts_as_rejected() -> None:
    stream, leases, kit = MemoryStream("clicks"), MemoryLeaseStore(), MemoryKit()
    stream.put(b"not json", "k")
    assert run(stream, leases, kit).totals()["rejected"] == 1
    stream.put(b"not json", "k")  # new delivery of the same bytes: rejected again, not absorbed
    again = run(stream, leases, kit).totals()
    assert (again["rejected"], again["redeliveries"]) == (1, 0)
