"""Time bundles (infra.bundles): what goes in comes out, in time order, however they overlap."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from infra.archive import ArchivePointer
from infra.bundles import (
    BUNDLE_ATTRIBUTES,
    bundle_item,
    bundle_range,
    decode_bundle,
    group_key,
    merge_bundles,
    merge_pages,
)
from infra.capacity import item_size
from infra.index import Claim, claim_item
from schemas.codec import Provenance

START = datetime(2026, 12, 4, 10, tzinfo=UTC)


def _item(n: int, at: datetime, *, file: int = 0) -> dict[str, Any]:
    claim = Claim(
        event_id=f"{n:064x}",
        occurrence_id=f"occ-{n}",
        source="checkout#eu",  # a separator in a name must not confuse the decoder
        event_type="order_placed",
        entity_id=f"user_{n % 17}",
        event_time=at,
        ingest_time=at + timedelta(seconds=3),
        lag_ms=3000 + n,
        provenance=Provenance(occurrence_id=f"occ-{n}", origin="http"),
        payload_bytes=200 + n,
        pointer=ArchivePointer("raw-bucket", f"raw/file-{file}.avro", n),
    )
    return claim_item(claim)


def test_a_bundle_gives_back_each_entry_as_its_identity_item() -> None:
    items = [_item(n, START + timedelta(seconds=59 - n), file=n % 2) for n in range(60)]
    bundle = bundle_item(items, 3)
    assert bundle["event_id"] == "tb#checkout#eu#order_placed#2026-12-04#3"
    assert bundle["n"] == 60 and len(bundle["f"]) == 2  # each archive file named once
    entries = decode_bundle(bundle)
    assert [e["time_key"] for e in entries] == sorted(i["time_key"] for i in items)
    by_id = {i["event_id"]: i for i in items}
    for entry in entries:
        assert set(entry) == BUNDLE_ATTRIBUTES
        original = by_id[entry["event_id"]]
        assert {k: original[k] for k in entry} == entry
    # what it costs to store: well under the ~600 bytes an index entry per event took
    assert item_size({k: {"B" if k == "e" else "S": v} for k, v in bundle.items() if k != "f"}) < (
        60 * 100
    )


def test_overlapping_bundles_merge_in_time_order_within_the_range() -> None:
    rng = random.Random(7)
    bundles = []
    everything = []
    for b in range(30):  # batches whose events are up to ten minutes late: they overlap
        items = [
            _item(b * 100 + k, START + timedelta(seconds=b * 60 + k - rng.randrange(600)))
            for k in range(rng.randrange(1, 40))
        ]
        items = [i for i in items if group_key(i)[2] == "2026-12-04T10"] or [
            _item(b * 100, START + timedelta(minutes=b))
        ]
        everything += items
        bundles.append(bundle_item(items, 0))
    bundles.sort(key=lambda b: b["item"])  # the order a Query returns them in
    keys = sorted(i["time_key"] for i in everything)
    low, high = keys[len(keys) // 4], keys[3 * len(keys) // 4]
    first, last = bundle_range(low, high)
    read = [b for b in bundles if first <= b["item"] <= last]
    scanned = [0]
    got = [e["time_key"] for e in merge_bundles(read, low, high, scanned)]
    assert got == [k for k in keys if low <= k <= high]
    assert scanned[0] == sum(b["n"] for b in read)
    # page by page: one answer per page, together the same stream
    pages = [read[n : n + 4] for n in range(0, len(read), 4)]
    paged = list(merge_pages(pages, low, high))
    assert len(paged) == len(pages)
    assert [e["time_key"] for entries, _ in paged for e in entries] == got
    assert sum(s for _, s in paged) == scanned[0]
