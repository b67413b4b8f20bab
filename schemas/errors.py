"""The root of the kit's errors, here at the bottom layer so that ``schemas`` raises them too.

``infra.errors`` draws the whole tree and re-exports these two: import them from there above
``schemas``.
"""

from __future__ import annotations

__all__ = ["ConfigError", "KitError"]


class KitError(Exception):
    """Root of every error the kit raises on purpose."""


class ConfigError(KitError):
    """Bad settings, config file or schema folder: an operator must fix it."""
