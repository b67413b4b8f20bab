"""The supervisor of `pik up`'s components, with a fake timer and fake workers."""

from __future__ import annotations

import threading
from collections.abc import Callable

from infra.errors import BackendError, ConfigError
from pik.supervisor import Backoff, State, Supervisor


class FakeTimer:
    """Time moves only when a component works (``work``) or the supervisor waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return stop.is_set()


def scripted(
    timer: FakeTimer, supervisor: Supervisor, script: list[tuple[float, bool, Exception | None]]
) -> Callable[[threading.Event, Callable[[], None]], None]:
    """A worker that, run after run, works for some seconds (reporting healthy or not) and then
    raises its error; once the script is done it stops the supervisor."""
    runs = iter(script)
    seen: list[str] = []

    def run(stop: threading.Event, healthy: Callable[[], None]) -> None:
        seen.append(supervisor.states()["w"])
        try:
            seconds, reports, error = next(runs)
        except StopIteration:
            stop.set()
            return
        if reports:
            healthy()
        timer.now += seconds
        if error is not None:
            raise error

    run.seen = seen  # type: ignore[attr-defined]
    return run


def test_restarts_with_capped_exponential_backoff() -> None:
    timer = FakeTimer()
    sup = Supervisor(backoff=Backoff(base_s=1, cap_s=5, healthy_after_s=30), timer=timer)
    outage = BackendError("DynamoDB UpdateItem: connection refused")
    component = sup.add("w", scripted(timer, sup, [(0.1, False, outage)] * 6))

    sup.supervise(component)

    assert timer.waits == [1, 2, 4, 5, 5, 5]
    assert component.restarts == 6
    assert component.state is State.STOPPED


def test_a_healthy_run_resets_the_backoff_and_a_short_one_does_not() -> None:
    timer = FakeTimer()
    sup = Supervisor(backoff=Backoff(base_s=1, cap_s=60, healthy_after_s=30), timer=timer)
    down = BackendError("down")
    script = [
        (0.1, False, down),
        (0.1, False, down),
        (40, True, down),  # healthy for 40 s: the next failure starts over
        (5, True, down),  # healthy, but only for 5 s: backoff grows again
        (0.1, False, down),
    ]
    sup.supervise(sup.add("w", scripted(timer, sup, script)))

    assert timer.waits == [1, 2, 1, 2, 4]


def test_states_go_restarting_then_ok_after_a_restart() -> None:
    timer = FakeTimer()
    sup = Supervisor(backoff=Backoff(base_s=1), timer=timer)
    states: list[str] = []

    def run(stop: threading.Event, healthy: Callable[[], None]) -> None:
        states.append(sup.states()["w"])
        if len(states) == 1:
            raise BackendError("Kinesis GetRecords: connection refused")
        healthy()
        states.append(sup.states()["w"])
        stop.set()

    component = sup.add("w", run)
    sup.supervise(component)

    assert states == ["starting", "starting", "ok"]
    assert component.restarts == 1
    assert component.state is State.STOPPED


def test_a_config_error_fails_the_component_once_with_its_reason() -> None:
    timer = FakeTimer()
    sup = Supervisor(timer=timer)
    calls: list[int] = []

    def run(stop: threading.Event, healthy: Callable[[], None]) -> None:
        calls.append(1)
        raise ConfigError("stream consumer 'pik-tap' of orders is not registered\nand more")

    component = sup.add("w", run)
    sup.supervise(component)

    assert calls == [1]
    assert timer.waits == []
    assert sup.states() == {"w": "failed"}
    assert component.reason == "stream consumer 'pik-tap' of orders is not registered and more"


def test_a_run_that_ends_by_itself_is_restarted() -> None:
    timer = FakeTimer()
    sup = Supervisor(backoff=Backoff(base_s=2), timer=timer)
    component = sup.add("w", scripted(timer, sup, [(1, True, None)]))

    sup.supervise(component)

    assert timer.waits == [2]
    assert component.restarts == 1


def test_stop_ends_the_supervising_threads() -> None:
    sup = Supervisor()
    ran = threading.Event()

    def run(stop: threading.Event, healthy: Callable[[], None]) -> None:
        healthy()
        ran.set()
        stop.wait()

    sup.add("w", run)
    sup.start()
    assert ran.wait(5)
    assert sup.states() == {"w": "ok"}
    sup.stop(5)
    assert sup.states() == {"w": "stopped"}
