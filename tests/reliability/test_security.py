"""Security: the token guards every route but /healthz (routes enumerated from the app), size
limits hold on every POST route, archive keys never leave their prefix, no secret is logged."""

from __future__ import annotations

import pytest

from infra.local import EmbeddedAws
from pik.kit import Kit, build_kit
from pik.settings import Settings
from tests.conftest import fresh_settings
from tests.reliability.conftest import CheckFigures
from tests.reliability.security import (
    keys_stay_in_prefix,
    no_secret_in_logs,
    size_limits,
    token_on_every_route,
)

pytestmark = pytest.mark.reliability

TOKEN = "s3cr3t-reliability-token"


@pytest.fixture
def guarded_kit(settings: Settings) -> Kit:
    built = build_kit(
        fresh_settings(
            settings.endpoint_url or "",
            api_token=TOKEN,
            max_event_bytes=16 * 1024,
            max_body_bytes=128 * 1024,
        )
    )
    built.bootstrap().run(demo_stream=False)
    return built


def test_every_route_but_healthz_needs_the_token(
    guarded_kit: Kit, check_figures: CheckFigures
) -> None:
    figures = token_on_every_route(guarded_kit, TOKEN)
    check_figures(figures)
    assert "POST /replay" in figures.notes["routes"]  # included routers are walked too


def test_size_limits_hold_on_every_post_route(kit: Kit, check_figures: CheckFigures) -> None:
    check_figures(size_limits(kit))


def test_archive_keys_never_leave_their_prefix(kit: Kit, check_figures: CheckFigures) -> None:
    check_figures(keys_stay_in_prefix(kit, examples=25))


def test_no_secret_appears_in_the_logs(
    aws_server: EmbeddedAws, check_figures: CheckFigures
) -> None:
    check_figures(no_secret_in_logs(aws_server.endpoint_url))


def test_aggregate_input_lists_keep_the_entity_in_one_escaped_segment(kit: Kit) -> None:
    from infra.aggregates import AggregateVersion, DynamoAggregates

    store = kit.aggregates()
    small = DynamoAggregates(kit.clients.dynamodb(), store.table, kit.archive, inline_limit=1)
    entity = "../../raw/source=x"
    small.put(
        AggregateVersion(
            entity_id=entity,
            day="2025-12-28",
            metric="daily_event_count",
            version=1,
            value=2,
            input_hash="h",
            input_count=2,
            sample_event_ids=["a", "b"],
            computed_at="2025-12-29T00:00:00.000000Z",
            definition={"name": "daily_event_count", "kind": "count"},
            input_event_ids=["a", "b"],
        )
    )
    s3 = kit.clients.s3()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=kit.names.bucket).get("Contents", [])]
    assert keys
    for key in keys:
        segments = key.split("/")
        assert segments[0] == "aggregates" and len(segments) == 3, key
        assert not {".", ".."} & set(segments), key
