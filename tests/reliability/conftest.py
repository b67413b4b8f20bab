"""Fixtures of the reliability suite; the ``reliability`` marker is registered here so the
suite can be selected (``-m reliability``) or left out (``-m "not reliability"``).

Each scenario test hands its figures to ``check_figures``, which asserts them and attaches them
to the test's report (``user_properties``, which pytest-xdist carries back from its workers);
at the end of the run the figures of every scenario that ran are printed as the same table
``bench/reliability.py`` prints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.emulators import kinesis_local
from tests.reliability.support import Figures
from tests.reliability.table import table

FIGURES_PROPERTY = "reliability_figures"
CheckFigures = Callable[[Figures], None]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "reliability: the reliability suite (bad input, faults, crash, load, security)"
    )


def assert_figures(figures: Figures) -> None:
    """A scenario passes when nothing was lost and every try survived; say what went wrong."""
    detail = "\n".join(figures.failures[:20])
    assert figures.lost == 0, f"{figures.scenario}: {figures.lost} lost\n{detail}"
    assert not figures.failures, f"{figures.scenario}: {len(figures.failures)} failures\n{detail}"
    assert figures.survived == figures.tried, figures.to_json()


@pytest.fixture
def check_figures(request: pytest.FixtureRequest) -> CheckFigures:
    """Record a scenario's figures for the summary table, then assert them."""

    def check(figures: Figures) -> None:
        request.node.user_properties.append((FIGURES_PROPERTY, figures.to_json()))
        assert_figures(figures)

    return check


@pytest.fixture(scope="module")
def kinesis_endpoint() -> Iterator[str]:
    """npm kinesis-local (tests/emulators.py installs it into .cache/), for one test module."""
    with kinesis_local() as endpoint:
        yield endpoint


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    found = sorted(
        (str(report.nodeid), value)
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", ())
        if name == FIGURES_PROPERTY
    )
    rows = [Figures.from_json(value) for _, value in found]
    if rows:
        terminalreporter.write_sep("=", "reliability figures")
        terminalreporter.write_line(table(rows))
