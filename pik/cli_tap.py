"""``pik tap`` and ``pik produce`` (registered on the main app by ``register``)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the tap and producer commands to ``app``."""
