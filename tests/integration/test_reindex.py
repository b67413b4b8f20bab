"""``pik reindex`` on the embedded AWS: the events table is deleted, rebuilt from the archive
alone, and answers explain, audit, gaps, lag and replay selection as before; a second run
writes no identity item."""

from __future__ import annotations

from typing import Any

from consumers.reindex import Reindexer
from infra.clock import FixedClock
from infra.index import Selection
from infra.local import EmbeddedAws
from infra.replay_queries import DynamoReplayQueries
from pik.explain import explain
from pik.investigate import Axis
from pik.kit import Kit, build_kit
from schemas.envelope import parse_time
from tests.conftest import fresh_settings
from tests.unit.test_investigate_data import (
    ACCEPTED,
    DUPLICATES,
    SINCE,
    SOURCE,
    T0,
    UNTIL,
    Incident,
    seed_incident,
)


def _answers(kit: Kit, incident: Incident) -> dict[str, Any]:
    inv = kit.investigator()
    window = inv.window(SINCE, UNTIL)

    def bare(doc: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in doc.items() if k != "cost"}

    start, end = parse_time(SINCE), parse_time(UNTIL)
    selected = [
        i["event_id"]
        for page in kit.index.select(Selection(start, end, source=SOURCE))
        for i in page.items
    ]
    entity = [
        i["event_id"]
        for page in kit.index.select(Selection(start, end, entity_id="cust-storm"))
        for i in page.items
    ]
    rejected = [
        i["occurrence_id"]
        for day in window.days()
        for page in DynamoReplayQueries(kit.clients.dynamodb(), kit.names.events_table).deliveries(
            f"{SOURCE}#{day}", window.low, window.high, statuses=["REJECTED"]
        )
        for i in page.items
    ]
    explained = [
        explain(event_id, kit.index, kit.reader)
        for event_id in (incident.storm_event_id, *incident.late_event_ids)
    ]
    return {
        "explain": explained,
        "audit": bare(inv.audit(window, sources=[SOURCE, "_unknown"]).to_json()),
        "gaps": bare(inv.gaps(window, sources=[SOURCE]).to_json()),
        "lag": bare(inv.lag(window, sources=[SOURCE], latest=5).to_json()),
        "lag by arrival": bare(
            inv.lag(window, sources=[SOURCE], latest=5, axis=Axis.ARRIVAL).to_json()
        ),
        "replay": {"source": selected, "entity": entity, "rejected": sorted(rejected)},
    }


def test_a_deleted_table_rebuilt_from_the_archive_answers_as_before(
    aws_server: EmbeddedAws,
) -> None:
    clock = FixedClock(T0)
    kit = build_kit(fresh_settings(aws_server.endpoint_url), clock=clock)
    kit.bootstrap().run(demo_stream=False)
    incident = seed_incident(kit.sink, clock)
    before = _answers(kit, incident)
    assert len(before["replay"]["source"]) == ACCEPTED  # the seed is what the test thinks

    dynamodb = kit.clients.dynamodb()
    dynamodb.delete_table(TableName=kit.names.events_table)
    dynamodb.get_waiter("table_not_exists").wait(TableName=kit.names.events_table)
    rebuilt = build_kit(kit.settings, clock=clock)  # a new process: nothing cached
    rebuilt.bootstrap().run(demo_stream=False)
    seen: list[tuple[int, int]] = []
    report = Reindexer(rebuilt.archive, rebuilt.index).run(
        progress=lambda done, total: seen.append((done, total))
    )
    assert report.claimed == report.accepted == ACCEPTED
    assert report.duplicates == DUPLICATES
    assert seen and seen[-1][0] == seen[-1][1] == report.files
    assert _answers(rebuilt, incident) == before

    again = Reindexer(rebuilt.archive, rebuilt.index).run()
    assert again.claimed == 0 and again.accepted == ACCEPTED
    assert _answers(rebuilt, incident) == before
