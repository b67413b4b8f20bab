"""Fixtures of the reliability suite; the ``reliability`` marker is registered here so the
suite can be selected (``-m reliability``) or left out (``-m "not reliability"``)."""

from __future__ import annotations

import pytest

from tests.reliability.support import Figures


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
