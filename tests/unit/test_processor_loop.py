"""consumers/processor_loop.py: a stop mid-batch hands the unhandled messages straight back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from consumers.processor import BatchOutcome
from consumers.processor_loop import DEFAULT_WAIT_S, LoopSummary, run_queue
from infra.queue import QueueMessage


class FakeQueue:
    def __init__(self, messages: list[QueueMessage]) -> None:
        self.waiting = list(messages)
        self.deleted: list[str] = []
        self.visibility: list[tuple[str, int]] = []
        self.waits: list[int] = []

    def receive(self, max_messages: int, wait_s: int) -> list[QueueMessage]:
        self.waits.append(wait_s)
        batch, self.waiting = self.waiting[:max_messages], self.waiting[max_messages:]
        if not batch:
            time.sleep(0.001)  # an empty long poll, much shortened
        return batch

    def delete(self, messages: Sequence[QueueMessage]) -> None:
        self.deleted.extend(m.message_id for m in messages)

    def retry_later(self, messages: Sequence[QueueMessage], delay_s: int) -> None:
        self.visibility.extend((m.message_id, delay_s) for m in messages)


class StoppedMidBatch:
    """Handles the first four messages of its first batch, then Ctrl-C comes."""

    dry_run = False

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def process(
        self, messages: Sequence[tuple[str, str]], *, should_stop: Callable[[], bool]
    ) -> BatchOutcome:
        self._stop.set()
        assert should_stop()
        outcome = BatchOutcome(windows_recomputed=1)
        outcome.failed[messages[0][0]] = "poison"
        outcome.released.extend(mid for mid, _ in messages[4:])
        return outcome


def test_a_stop_mid_batch_releases_the_rest_at_once_and_deletes_what_was_done() -> None:
    queue = FakeQueue([QueueMessage(f"m{i}", f"r{i}", "{}", 1) for i in range(15)])
    stop = threading.Event()
    seen: list[LoopSummary] = []
    summary = run_queue(
        StoppedMidBatch(stop),  # type: ignore[arg-type]
        queue,
        once=False,
        stop=stop,
        retry_base_s=5,
        on_batch=seen.append,
    )
    assert queue.deleted == ["m1", "m2", "m3"]
    assert queue.visibility == [("m0", 5)] + [(f"m{i}", 0) for i in range(4, 10)]
    assert [m.message_id for m in queue.waiting] == [f"m{i}" for i in range(10, 15)]
    assert (summary.batches, summary.messages, summary.released) == (1, 4, 6)
    assert (summary.failed, summary.windows_recomputed) == (1, 1)
    assert seen == [summary]


def test_receives_wait_at_most_a_second_by_default() -> None:
    queue = FakeQueue([])
    stop = threading.Event()
    timer = threading.Timer(0.05, stop.set)
    timer.start()

    class Idle:
        dry_run = False

    run_queue(Idle(), queue, once=False, stop=stop)  # type: ignore[arg-type]
    timer.join()
    assert DEFAULT_WAIT_S == 1
    assert queue.waits and set(queue.waits) == {1}
