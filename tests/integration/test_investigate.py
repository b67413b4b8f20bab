"""The investigation commands on the embedded AWS: the scripted incident ingested through the
real sink into S3 and DynamoDB (over HTTP, moto's server), then found again by Query alone.

The answers must equal the in-memory ones (same seed), whatever the page size, and the only
DynamoDB operation the investigation makes is Query.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from infra.clock import FixedClock
from infra.index_queries import DynamoIndexQueries, MemoryIndexQueries
from infra.local import EmbeddedAws
from pik.http import create_app
from pik.investigate import Axis, Investigator
from pik.kit import Kit, build_kit
from tests.conftest import fresh_settings
from tests.unit.test_investigate_data import (
    SINCE,
    SOURCE,
    STORM_COPIES,
    T0,
    UNTIL,
    Incident,
    MemoryIncident,
    memory_incident,
    seed_incident,
)


@pytest.fixture(scope="module")
def seeded(aws_server: EmbeddedAws) -> tuple[Kit, Incident]:
    clock = FixedClock(T0)
    kit = build_kit(fresh_settings(aws_server.endpoint_url), clock=clock)
    kit.bootstrap().run(demo_stream=False)
    return kit, seed_incident(kit.sink, clock)


@pytest.fixture(scope="module")
def expected() -> MemoryIncident:
    return memory_incident()


@pytest.fixture
def operations(seeded: tuple[Kit, Incident]) -> Iterator[Counter[str]]:
    """DynamoDB operations made by the test, by name."""
    kit, _ = seeded
    seen: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        seen[event_name.rsplit(".", 1)[-1]] += 1

    events = kit.clients.dynamodb().meta.events
    events.register("before-call.dynamodb", count)
    yield seen
    events.unregister("before-call.dynamodb", count)


def investigators(
    seeded: tuple[Kit, Incident], expected: MemoryIncident, page_size: int
) -> tuple[Investigator, Investigator]:
    kit, _ = seeded
    queries = DynamoIndexQueries(
        kit.clients.dynamodb(), kit.names.events_table, page_size=page_size
    )
    return (
        Investigator(queries, kit.clock),
        Investigator(MemoryIndexQueries(expected.index), expected.clock),
    )


PAGE_SIZE = 40


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """A report without its cost, and latest arrivals as their lags: events that arrived
    equally late come back from each store in its own order."""
    doc = {k: v for k, v in doc.items() if k != "cost"}
    if "latest" in doc:
        doc["latest"] = [e["lag_ms"] for e in doc["latest"]]
    return doc


def test_dynamo_answers_equal_the_in_memory_ones_by_query_alone(
    seeded: tuple[Kit, Incident], expected: MemoryIncident, operations: Counter[str]
) -> None:
    """Small pages (40 items) so that every read goes through several Query pages."""
    dynamo, memory = investigators(seeded, expected, PAGE_SIZE)
    window = dynamo.window(SINCE, UNTIL)
    costs, docs = [], []
    for run in (
        lambda inv: inv.audit(window, sources=[SOURCE, "_unknown"]),
        lambda inv: inv.audit(window, sources=[SOURCE], event_type="paid"),
        lambda inv: inv.gaps(window, sources=[SOURCE]),
        lambda inv: inv.lag(window, sources=[SOURCE], latest=5),
        lambda inv: inv.lag(window, sources=[SOURCE], latest=5, axis=Axis.ARRIVAL),
    ):
        got = run(dynamo).to_json()
        assert comparable(got) == comparable(run(memory).to_json())
        costs.append(got["cost"])
        docs.append(got)
    # Queries, and the wide marks of the keys read (one BatchGetItem per day read, at most)
    assert set(operations) == {"Query", "BatchGetItem"}
    assert sum(c["queries"] for c in costs) == operations["Query"]
    everything, paid = costs[0], costs[1]
    # Counts come from the rollups (one item per type and hour), not from the 338 deliveries;
    # the duplicate and rejected deliveries are read for who caused them (by_ingest).
    audit = docs[0]
    troubled = audit["totals"]["duplicate"] + audit["totals"]["rejected"]
    assert audit["totals"]["deliveries"] == 338 and audit["troubled_read"] == troubled
    hours = {h["hour"] for h in audit["hourly"] if any(h[k] for k in ("accepted", "duplicate"))}
    assert len(hours) <= everything["items"] - troubled < 338 - troubled
    assert paid["items"] < everything["items"]


def test_the_report_over_http(seeded: tuple[Kit, Incident]) -> None:
    kit, _ = seeded
    app = create_app(kit)
    with TestClient(app) as client:
        page = client.get("/report", params={"source": SOURCE, "since": SINCE, "until": UNTIL})
        all_sources = client.get("/report", params={"since": SINCE, "until": UNTIL})
        bad_time = client.get("/report", params={"source": SOURCE, "since": "yesterday"})
    app.state.committer.close()
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.count("<svg") >= 6 and "2025-12-28T05:00:00Z" in page.text
    assert all_sources.status_code == 200  # the catalog names the sources
    assert bad_time.status_code == 400 and "yesterday" in bad_time.json()["detail"]


def test_explain_over_http_tells_every_delivery_of_the_storm_event(
    seeded: tuple[Kit, Incident],
) -> None:
    kit, incident = seeded
    app = create_app(kit)
    with TestClient(app) as client:
        doc = client.get(f"/events/{incident.storm_event_id}").json()
    app.state.committer.close()
    assert doc["summary"]["deliveries"] == STORM_COPIES + 1
    first, *copies = doc["deliveries"]
    assert first["first"] and first["provenance"]["stream"] == "orders"
    assert first["archive"]["uri"].startswith(f"s3://{kit.names.bucket}/raw/source=orders/")
    assert {c["status"] for c in copies} == {"DUPLICATE"}
    assert all(c["archive"]["key"].startswith("raw/") for c in copies)
    assert doc["replays"] == [] and doc["aggregate_versions"] == []  # tracked, none yet


def test_catalog_items_the_sink_wrote_name_the_sources(
    seeded: tuple[Kit, Incident], expected: MemoryIncident
) -> None:
    dynamo, _ = investigators(seeded, expected, PAGE_SIZE)
    window = dynamo.window(SINCE, UNTIL)
    assert SOURCE in dynamo.audit(window, event_type="paid").sources
    assert "paid" in [g.event_type for g in dynamo.lag(window, latest=0).overall]
