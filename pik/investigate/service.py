"""The investigation use cases: Query the index (``IndexQueries``), hand the items to the pure
computations (``audit``, ``gaps``, ``lag``), and say what the answer cost in Queries.

Every read is a Query of one index partition (a source and a UTC day); nothing Scans.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from infra.clock import Clock
from infra.index import QueryPage
from infra.index_queries import IndexQueries
from infra.rollups import (
    ACCEPTED,
    DUPLICATE,
    EVENTS,
    LATE_KEEP,
    REJECTED,
    Rollup,
    merge_rollups,
)
from pik.investigate.audit import DELIVERY_ATTRIBUTES, AuditReport, Delivery, summarize_audit
from pik.investigate.catalog import (
    Catalog,
    IndexCatalog,
    SourceCheck,
    SourceRequired,
    check_sources,
)
from pik.investigate.gaps import (
    DEFAULT_THRESHOLD,
    Axis,
    GapReport,
    GapSeries,
    gap_series,
)
from pik.investigate.lag import (
    LagReport,
    LateEvent,
    latest_arrivals,
    summarize_lags,
)
from pik.investigate.window import Granularity, Window, iso, resolve_window
from schemas.envelope import format_time

__all__ = ["DEFAULT_LATEST", "CountingQueries", "InvestigationReport", "Investigator"]

DEFAULT_LATEST = 20


# Duplicate and rejected deliveries read for audit's top entities and storms' events: the
# counts come from rollups whatever the volume; who caused them is read up to this many.
TROUBLE_READ_LIMIT = 250
MAX_CATALOG_SOURCES = 50  # each source costs Queries per day; any producer can add one


class CountingQueries:
    """An ``IndexQueries`` that counts what it read: Queries (pages), items kept, items read."""

    def __init__(self, inner: IndexQueries) -> None:
        self._inner = inner
        self.queries = 0
        self.items = 0
        self.scanned = 0

    def _count(self, pages: Iterator[QueryPage]) -> Iterator[QueryPage]:
        for page in pages:
            if page.cached:
                yield page
                continue
            self.queries += 1
            self.items += len(page.items)
            self.scanned += page.scanned
            yield page

    def deliveries(self, *args: Any, **kwargs: Any) -> Iterator[QueryPage]:
        return self._count(self._inner.deliveries(*args, **kwargs))

    def events(self, *args: Any, **kwargs: Any) -> Iterator[QueryPage]:
        return self._count(self._inner.events(*args, **kwargs))

    def lags(self, *args: Any, **kwargs: Any) -> Iterator[QueryPage]:
        return self._count(self._inner.lags(*args, **kwargs))

    def catalog(self, day: str) -> Iterator[QueryPage]:
        return self._count(self._inner.catalog(day))

    def rollups(self, source: str, day: str, *, arrival: bool = False) -> Iterator[QueryPage]:
        return self._count(self._inner.rollups(source, day, arrival=arrival))

    def latest(self, *args: Any, **kwargs: Any) -> Iterator[QueryPage]:
        return self._count(self._inner.latest(*args, **kwargs))

    def cost(self) -> dict[str, int]:
        return {"queries": self.queries, "items": self.items, "scanned": self.scanned}


def _items(pages: Iterator[QueryPage]) -> Iterator[dict[str, Any]]:
    for page in pages:
        yield from page.items


@dataclass(slots=True)
class InvestigationReport:
    """What ``pik report`` draws: audit, hourly gaps and lag of one window."""

    window: Window
    sources: list[str]
    event_type: str | None
    audit: AuditReport
    gaps: GapReport
    lag: LagReport
    generated_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "window": self.window.to_json(),
            "sources": self.sources,
            "event_type": self.event_type,
            "generated_at": self.generated_at,
            "audit": self.audit.to_json(),
            "gaps": self.gaps.to_json(),
            "lag": self.lag.to_json(),
        }


class Investigator:
    def __init__(
        self,
        queries: IndexQueries,
        clock: Clock,
        *,
        catalog: Callable[[IndexQueries], Catalog] = IndexCatalog,
    ) -> None:
        self._queries = queries
        self._clock = clock
        self._catalog = catalog

    def window(self, since: str | None = None, until: str | None = None) -> Window:
        """The window of ``--since``/``--until`` (default: the last 7 days, by the clock)."""
        return resolve_window(since, until, self._clock.now())

    def check_sources(self, window: Window, sources: Sequence[str]) -> SourceCheck:
        """The named sources the catalog has no events from in ``window`` (a hint for typos)."""
        return check_sources(self._catalog(self._queries), sources, window)

    def _sources(self, given: Sequence[str], window: Window, catalog: Catalog) -> list[str]:
        if given:
            return sorted(set(given))
        known = catalog.sources(window)
        if known is None:
            raise SourceRequired(
                "name the source (--source S): the index keeps no catalog of sources yet, "
                "and finding them would need a Scan of the whole table"
            )
        if len(known) > MAX_CATALOG_SOURCES:
            raise SourceRequired(
                f"{len(known)} sources in this window (producers choose them): name the ones "
                f"to look at with --source (at most {MAX_CATALOG_SOURCES} are examined unasked)"
            )
        return known

    # -- rollups --------------------------------------------------------------------------
    @staticmethod
    def _rollups(
        q: CountingQueries,
        source: str,
        window: Window,
        event_type: str | None,
        *,
        arrival: bool = False,
    ) -> list[Rollup]:
        """The rollups of ``source``'s hours that overlap ``window`` (merged over shards);
        ``arrival``: their arrival items (``la_`` counters)."""
        low, high = format_time(window.start)[:13], format_time(window.end)[:13]
        found = (
            Rollup.from_item(item)
            for day in window.days()
            for item in _items(q.rollups(source, day, arrival=arrival))
        )
        return merge_rollups(
            r
            for r in found
            if low <= r.hour < high and (event_type is None or r.event_type == event_type)
        )

    # -- audit ---------------------------------------------------------------------------
    def audit(
        self,
        window: Window,
        *,
        sources: Sequence[str] = (),
        event_type: str | None = None,
        top: int = 10,
    ) -> AuditReport:
        """Counts from the rollups of the window's whole hours; top entities and duplicate
        storms' events from the duplicate and rejected deliveries (the first
        ``TROUBLE_READ_LIMIT`` of them)."""
        q = CountingQueries(self._queries)
        names = self._sources(sources, window, self._catalog(q))
        hours = window.whole_hours()
        rollups = [r for source in names for r in self._rollups(q, source, hours, event_type)]
        troubled = list(
            islice(
                (
                    Delivery.from_item(item)
                    for source in names
                    for day in hours.days()
                    for item in _items(
                        q.deliveries(
                            source,
                            day,
                            hours.low,
                            hours.high,
                            event_type=event_type,
                            attributes=DELIVERY_ATTRIBUTES,
                            first_copies=False,
                            page_size=TROUBLE_READ_LIMIT,
                        )
                    )
                ),
                TROUBLE_READ_LIMIT,
            )
        )
        report = summarize_audit(
            rollups,
            troubled,
            hours,
            sources=names,
            event_type=event_type,
            top=top,
            troubled_read=len(troubled),
        )
        report.cost = q.cost()
        return report

    # -- gaps ----------------------------------------------------------------------------
    def gaps(
        self,
        window: Window,
        *,
        sources: Sequence[str] = (),
        event_type: str | None = None,
        granularity: Granularity = Granularity.HOUR,
        axis: Axis = Axis.EVENT,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> GapReport:
        """Counts per bucket from the rollups (by event hour, or by ingest hour: ``ARRIVAL``)."""
        q = CountingQueries(self._queries)
        names = self._sources(sources, window, self._catalog(q))
        width = granularity.key_width
        series: list[GapSeries] = []
        for source in names:
            per_type: dict[str, Counter[str]] = defaultdict(Counter)  # type -> bucket -> count
            for r in self._rollups(q, source, window.whole_hours(), event_type):
                if axis is Axis.EVENT:
                    n = r.count(EVENTS)
                else:
                    n = r.count(ACCEPTED) + r.count(DUPLICATE) + r.count(REJECTED)
                if n:
                    per_type[r.event_type][r.hour[:width]] += n
            groups: list[tuple[str | None, Counter[str]]] = sorted(per_type.items())
            if event_type is not None:
                groups = [(event_type, per_type.get(event_type, Counter()))]
            elif len(groups) != 1:  # the source as a whole, when it has several types (or none)
                groups.insert(0, (None, sum(per_type.values(), Counter())))
            for name, counts in groups:
                series.append(gap_series(source, name, counts, window, granularity, threshold))
        return GapReport(window, granularity, axis, threshold, series, q.cost())

    # -- lag -----------------------------------------------------------------------------
    def lag(
        self,
        window: Window,
        *,
        sources: Sequence[str] = (),
        event_type: str | None = None,
        latest: int = DEFAULT_LATEST,
        axis: Axis = Axis.EVENT,
    ) -> LagReport:
        """Lateness of the events whose event time is in the window (``axis=EVENT``), or of
        what arrived in the window whatever its event time (``axis=ARRIVAL``: late data)."""
        q = CountingQueries(self._queries)
        catalog = self._catalog(q)
        names = self._sources(sources, window, catalog)
        if axis is Axis.ARRIVAL:
            return self._lag_by_arrival(q, window, names, event_type, latest)
        hours = window.whole_hours()
        latest = min(latest, LATE_KEEP)
        lags: dict[tuple[str, str, str], Counter[int]] = defaultdict(Counter)
        for source in names:
            for r in self._rollups(q, source, hours, event_type):
                if r.count(EVENTS):
                    lags[(source, r.event_type, r.hour[:10])].update(r.lags())
        candidates: list[LateEvent] = []
        maxima: dict[tuple[str, str, str], int] = {}  # exact, where the histogram rounds
        for key in sorted(lags):
            pages = q.latest(*key, hours.low, hours.high, limit=max(latest, 1))
            found = [LateEvent.from_item(i) for i in _items(pages)]
            if found:
                maxima[key] = max(e.lag_ms for e in found)
            candidates.extend(found)
        window = hours
        by_day, overall = summarize_lags(lags, maxima)
        return LagReport(
            window,
            names,
            by_day,
            overall,
            latest_arrivals(candidates, latest) if latest > 0 else [],
            q.cost(),
        )

    def _lag_by_arrival(
        self,
        q: CountingQueries,
        window: Window,
        names: list[str],
        event_type: str | None,
        latest: int,
    ) -> LagReport:
        """First copies ingested in the window's whole hours, grouped by their event day: the
        arrival rollups' histograms; the latest of them from each event day's latest-arrivals
        list, those that arrived in the window."""
        hours = window.whole_hours()
        latest = min(latest, LATE_KEEP)
        low, high = format_time(hours.start), format_time(hours.end)
        lags: dict[tuple[str, str, str], Counter[int]] = defaultdict(Counter)
        for source in names:
            for r in self._rollups(q, source, hours, event_type, arrival=True):
                for (day, bucket), n in r.arrivals().items():
                    lags[(source, r.event_type, day)][bucket] += n
        candidates: list[LateEvent] = []
        maxima: dict[tuple[str, str, str], int] = {}
        for key in sorted(lags):
            pages = q.latest(*key, low, high, limit=max(latest, 1), by="ingest_time")
            found = [LateEvent.from_item(i) for i in _items(pages)]
            if found:
                maxima[key] = max(e.lag_ms for e in found)
            candidates.extend(found)
        by_day, overall = summarize_lags(lags, maxima)
        return LagReport(
            hours,
            names,
            by_day,
            overall,
            latest_arrivals(candidates, latest) if latest > 0 else [],
            q.cost(),
            axis=Axis.ARRIVAL,
        )

    # -- report --------------------------------------------------------------------------
    def report(
        self,
        window: Window,
        *,
        sources: Sequence[str] = (),
        event_type: str | None = None,
    ) -> InvestigationReport:
        """Audit, hourly event-time gaps and lag of one window, for the HTML report."""
        audit = self.audit(window, sources=sources, event_type=event_type)
        names = audit.sources
        gaps = self.gaps(window, sources=names, event_type=event_type)
        lag = self.lag(window, sources=names, event_type=event_type)
        return InvestigationReport(
            window=window,
            sources=names,
            event_type=event_type,
            audit=audit,
            gaps=gaps,
            lag=lag,
            generated_at=iso(self._clock.now()),
        )
