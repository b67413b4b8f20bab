"""``pik replay`` and ``pik replays ...`` (registered on the main app by ``register``)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the replay commands to ``app``."""
