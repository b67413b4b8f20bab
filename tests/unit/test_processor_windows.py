"""consumers/processor.py with consumers/processor_windows.py, on in-memory adapters: the work for
one (entity, day) is done once per replay, not once per batch, and versions stay the same."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from consumers.processor import AggregateDefinition, Processor
from consumers.processor_windows import WindowCache, WindowEvent, WindowState
from infra.aggregates import MemoryAggregates
from infra.archive import ArchivePointer
from infra.index import MemoryEventIndex, QueryPage
from tests.unit.support import MemoryKit, event_body, submission

DAY = "2025-12-28"
DEFINITIONS = (
    AggregateDefinition("daily_event_count"),
    AggregateDefinition("daily_steps", kind="sum", field="steps"),
)


class CountingIndex:
    """The in-memory index, counting the window items the processor reads from it."""

    def __init__(self, index: MemoryEventIndex) -> None:
        self._index = index
        self.items_read = 0
        self.selects = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)

    def select(self, *args: Any, **kwargs: Any) -> Iterator[QueryPage]:
        self.selects += 1
        for page in self._index.select(*args, **kwargs):
            self.items_read += len(page.items)
            yield page

    def get(self, event_id: str) -> dict[str, Any] | None:
        item = self._index.get(event_id)
        self.items_read += item is not None
        return item


class World:
    def __init__(self) -> None:
        self.kit = MemoryKit()
        self.index = CountingIndex(self.kit.index)
        self.store = MemoryAggregates()
        self._ingested = 0

    def processor(self, *, dry_run: bool = False) -> Processor:
        return Processor(
            self.index,
            self.kit.archive,
            self.store,
            self.kit.clock,
            self.kit.metrics,
            definitions=DEFINITIONS,
            dry_run=dry_run,
        )

    def ingest(self, count: int, replay_id: str, entity: str = "user_123") -> list[str]:
        """``count`` new events of (entity, DAY), ingested; their replay message bodies."""
        first = self._ingested
        self._ingested += count
        bodies = [
            event_body(
                entity_id=entity,
                event_time=f"{DAY}T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z",
                payload={"steps": n},
            )
            for n in range(first, first + count)
        ]
        subs = [submission(b, f"occ-{first + i}", str(i)) for i, b in enumerate(bodies)]
        results = self.kit.sink.ingest(subs, label=f"b{first}")
        return [
            json.dumps(
                {
                    "replay_id": replay_id,
                    "event_id": r.event_id,
                    "entity_id": json.loads(b)["entity_id"],
                    "event_time": json.loads(b)["event_time"],
                    "archive": r.archive.to_json() if r.archive else None,
                }
            )
            for r, b in zip(results, bodies, strict=True)
        ]

    def latest(self, metric: str, entity: str = "user_123") -> Any:
        return self.store.latest(entity, DAY, metric)


def in_batches(proc: Processor, bodies: list[str], size: int = 10) -> list[Any]:
    return [
        proc.process([(f"m{i + j}", b) for j, b in enumerate(bodies[i : i + size])])
        for i in range(0, len(bodies), size)
    ]


@pytest.mark.parametrize("events", [50, 400])
def test_window_items_read_per_message_do_not_grow_with_the_window(events: int) -> None:
    world = World()
    bodies = world.ingest(events, "r1")
    outcomes = in_batches(world.processor(), bodies)
    assert world.index.items_read == events  # one read of the window, whatever its size
    assert world.index.selects == 1
    assert sum(o.windows_recomputed for o in outcomes) == 1
    assert [len(o.written) for o in outcomes] == [2] + [0] * (len(outcomes) - 1)
    assert world.latest("daily_event_count").value == events
    assert world.latest("daily_steps").value == sum(range(events))


def test_a_message_for_an_event_indexed_after_the_read_costs_one_item_not_a_window() -> None:
    world = World()
    first = world.ingest(30, "r1")
    proc = world.processor()
    in_batches(proc, first)
    read = world.index.items_read
    late = world.ingest(1, "r1")  # same replay, indexed after the window was read
    [outcome] = in_batches(proc, late)
    assert world.index.items_read == read + 1 and world.index.selects == 1
    count = world.latest("daily_event_count")
    assert (count.version, count.previous_version, count.value) == (2, 1, 31)
    assert json.loads(late[0])["event_id"] in count.input_event_ids
    assert {v.metric for v in outcome.written} == {"daily_event_count", "daily_steps"}


def test_another_replay_reads_the_window_again_and_counts_events_it_did_not_send() -> None:
    world = World()
    first = world.ingest(20, "r1")
    proc = world.processor()
    in_batches(proc, first)
    world.ingest(5, "never-replayed")  # indexed, but no message of r1 names them
    in_batches(proc, first[:3])  # r1 again: nothing new
    assert world.latest("daily_event_count").value == 20
    again = [json.dumps({**json.loads(b), "replay_id": "r2"}) for b in first[:3]]
    in_batches(proc, again)
    assert world.index.selects == 2
    count = world.latest("daily_event_count")
    assert (count.version, count.value, count.replay_id) == (2, 25, "r2")


def test_versions_equal_a_from_scratch_processor_whatever_the_order() -> None:
    world = World()
    bodies = world.ingest(60, "r1")
    mixed = bodies[::2] + bodies[1::2][::-1]
    in_batches(world.processor(), mixed, size=7)
    fresh = World()
    fresh.ingest(60, "r1")
    fresh.processor().process([("all", bodies[0])])
    for metric in ("daily_event_count", "daily_steps"):
        ours, theirs = world.latest(metric), fresh.latest(metric)
        assert (ours.value, ours.input_hash, ours.version) == (
            theirs.value,
            theirs.input_hash,
            theirs.version,
        )


def test_a_dry_run_counts_each_change_once_across_batches() -> None:
    world = World()
    bodies = world.ingest(100, "r1")
    outcomes = in_batches(world.processor(dry_run=True), bodies)
    assert sum(len(o.written) for o in outcomes) == len(DEFINITIONS)
    assert world.store.items == {}


def test_a_window_that_failed_is_read_again_from_scratch() -> None:
    world = World()
    bodies = world.ingest(10, "r1")
    proc = world.processor()
    real_put = world.store.put
    calls = {"n": 0}

    def failing_put(version: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            from infra.errors import BackendError

            raise BackendError("DynamoDB PutItem: timeout")
        real_put(version)

    world.store.put = failing_put  # type: ignore[method-assign]
    [first] = in_batches(proc, bodies)
    assert len(first.failed) == 10
    [second] = in_batches(proc, bodies)
    assert second.failed == {} and world.index.selects == 2  # read again after the failure
    assert world.latest("daily_event_count").value == 10
    [third] = in_batches(proc, bodies)
    assert third.failed == {} and world.index.selects == 2  # then remembered


def test_stopping_releases_the_messages_not_handled() -> None:
    world = World()
    a = world.ingest(3, "r1", entity="user_a")
    b = world.ingest(3, "r1", entity="user_b")

    def stop_after_user_a() -> bool:  # as if Ctrl-C came once user_a's window was done
        return world.latest("daily_steps", "user_a") is not None

    outcome = world.processor().process(
        [(f"m{i}", body) for i, body in enumerate(a + b)], should_stop=stop_after_user_a
    )
    assert sorted(outcome.released) == ["m3", "m4", "m5"]  # user_b's window, not started
    assert outcome.failed == {}
    assert world.latest("daily_event_count", "user_a").value == 3
    assert world.latest("daily_event_count", "user_b") is None


def test_the_cache_evicts_least_recently_used_windows_but_never_the_one_in_hand() -> None:
    cache = WindowCache(max_events=5)
    pointer = ArchivePointer("b", "k", 0)

    def state(n: int) -> WindowState:
        return WindowState({"r"}, {f"e{i}": WindowEvent("s", "t", pointer) for i in range(n)}, {})

    cache.put(("a", DAY), state(2))
    cache.put(("b", DAY), state(2))
    assert cache.get(("a", DAY)) is not None  # a is now the most recent
    cache.put(("c", DAY), state(2))
    assert cache.get(("b", DAY)) is None and cache.get(("a", DAY)) is not None
    cache.put(("big", DAY), state(9))
    assert len(cache) == 1 and cache.get(("big", DAY)) is not None
