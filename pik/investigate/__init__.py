"""Investigation use cases: ``audit``, ``gaps``, ``lag`` and the HTML ``report``.

Layers, top to bottom: ``service`` (``Investigator``: which Queries to run, through
``infra.index_queries``), the pure computations (``audit``, ``gaps``, ``lag``, ``stats``,
``window``), and the renderings (``console`` for the terminal, ``report_html`` + ``svg``).
"""

from __future__ import annotations

from pik.investigate.audit import AuditReport
from pik.investigate.catalog import Catalog, IndexCatalog, SourceRequired
from pik.investigate.gaps import Axis, GapReport
from pik.investigate.lag import LagReport
from pik.investigate.service import InvestigationReport, Investigator
from pik.investigate.window import Granularity, Window, WindowError

__all__ = [
    "AuditReport",
    "Axis",
    "Catalog",
    "GapReport",
    "Granularity",
    "IndexCatalog",
    "InvestigationReport",
    "Investigator",
    "LagReport",
    "SourceRequired",
    "Window",
    "WindowError",
]
