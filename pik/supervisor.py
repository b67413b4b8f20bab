"""Keep long-running components (``pik up``'s taps) alive: restart with capped backoff.

A component is a callable ``run(stop, healthy)`` that works until ``stop`` is set and calls
``healthy()`` whenever it has shown it works (a tap: after each shard discovery round). When it
raises, the supervisor logs one line, waits ``base * 2^(failures - 1)`` seconds (at most
``cap``) and runs it again; a run that stayed healthy for ``healthy_after_s`` resets the backoff.
An error of a ``fatal`` type (``ConfigError``: only the operator can fix it) marks the component
``failed`` with its one-line reason and it is not restarted.

States, as ``GET /healthz`` shows them: ``starting`` (running, not yet healthy), ``ok``,
``restarting`` (failed, waiting to run again), ``failed`` (given up), ``stopped``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from infra.errors import ConfigError, KitError

log = logging.getLogger(__name__)

Run = Callable[[threading.Event, Callable[[], None]], object]


class State(StrEnum):
    STARTING = "starting"
    OK = "ok"
    RESTARTING = "restarting"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float = 1.0
    cap_s: float = 60.0
    healthy_after_s: float = 60.0  # a run healthy this long resets the backoff

    def delay(self, failures: int) -> float:
        return float(min(self.cap_s, self.base_s * 2 ** max(0, failures - 1)))


class Timer(Protocol):
    def monotonic(self) -> float: ...

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        """Wait ``seconds`` or until ``stop`` is set; True when stopped."""
        ...


class RealTimer:
    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        return stop.wait(seconds)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, KitError) else f"{type(exc).__name__}: {text}"


@dataclass
class Component:
    name: str
    run: Run
    state: State = State.STARTING
    reason: str = ""
    restarts: int = 0
    healthy_since: float | None = None
    thread: threading.Thread | None = field(default=None, repr=False)


class Supervisor:
    def __init__(
        self,
        *,
        backoff: Backoff = Backoff(),
        timer: Timer | None = None,
        fatal: tuple[type[BaseException], ...] = (ConfigError,),
    ) -> None:
        self.backoff = backoff
        self._timer = timer or RealTimer()
        self._fatal = fatal
        self.stop_event = threading.Event()
        self.components: dict[str, Component] = {}
        self._lock = threading.Lock()

    def add(self, name: str, run: Run) -> Component:
        component = Component(name, run)
        self.components[name] = component
        return component

    def start(self) -> None:
        for component in self.components.values():
            component.thread = threading.Thread(
                target=self.supervise, args=(component,), name=component.name, daemon=True
            )
            component.thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        self.stop_event.set()
        for component in self.components.values():
            if component.thread is not None:
                component.thread.join(timeout)

    def states(self) -> dict[str, str]:
        """Each component's state, by name (what ``/healthz`` reports)."""
        with self._lock:
            return {name: c.state.value for name, c in self.components.items()}

    def _set(self, component: Component, state: State, reason: str = "") -> None:
        with self._lock:
            component.state, component.reason = state, reason

    def supervise(self, component: Component) -> None:
        """Run ``component`` until stopped, restarting it after failures (see module doc)."""
        stop, timer = self.stop_event, self._timer
        failures = 0

        def healthy() -> None:
            if component.state is not State.OK:
                component.healthy_since = timer.monotonic()
                if component.restarts:
                    log.info("component healthy again", extra={"component": component.name})
                self._set(component, State.OK)

        while not stop.is_set():
            component.healthy_since = None
            if component.state is not State.STARTING:
                self._set(component, State.STARTING, component.reason)
            try:
                component.run(stop, healthy)
                if stop.is_set():
                    break
                reason, bug = "ended without being asked to stop", None
            except self._fatal as exc:
                reason = one_line(exc)
                log.error(
                    "component failed; not restarted",
                    extra={"component": component.name, "reason": reason},
                )
                self._set(component, State.FAILED, reason)
                return
            except Exception as exc:
                reason = one_line(exc)
                bug = None if isinstance(exc, KitError) else exc  # not an outage: show where
            since = component.healthy_since
            if since is not None and timer.monotonic() - since >= self.backoff.healthy_after_s:
                failures = 0
            failures += 1
            delay = self.backoff.delay(failures)
            log.warning(
                "component failed; restarting",
                extra={
                    "component": component.name,
                    "reason": reason,
                    "attempt": failures,
                    "restart_in_s": delay,
                },
                exc_info=bug,
            )
            self._set(component, State.RESTARTING, reason)
            if timer.wait(stop, delay):
                break
            component.restarts += 1
        self._set(component, State.STOPPED)
