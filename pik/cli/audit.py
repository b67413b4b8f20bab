"""``pik audit``, ``pik gaps``, ``pik lag`` and ``pik report``: the investigation commands,
each backed by index Queries only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from infra.errors import KitError
from infra.rollups import LATE_KEEP
from pik.cli.common import JsonFlag, commands, err, fail, open_kit, out, print_json
from pik.investigate import Axis, Granularity, Investigator, SourceRequired, WindowError
from pik.investigate.catalog import SourceCheck
from pik.investigate.gaps import DEFAULT_THRESHOLD
from pik.investigate.service import DEFAULT_LATEST, MAX_CATALOG_SOURCES

T = TypeVar("T")

SourceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--source",
        metavar="SOURCE",
        help="Source to look at (repeat for several). Default: every source the index's catalog "
        f"saw in the window (with more than {MAX_CATALOG_SOURCES}, name them).",
    ),
]
EventTypeOpt = Annotated[
    str | None, typer.Option("--event-type", metavar="TYPE", help="Only this event type.")
]
SinceOpt = Annotated[
    str | None,
    typer.Option(
        metavar="WHEN",
        help="Start: 2025-12-28T05:00:00Z, 2025-12-28, or 36h / 7d ago (default: 7d).",
    ),
]
UntilOpt = Annotated[
    str | None, typer.Option(metavar="WHEN", help="End (excluded), same forms (default: now).")
]
JsonOpt = JsonFlag


def _run(action: Callable[[Investigator], T]) -> T:
    """Build the investigator from settings and run ``action``; a failure is one line on
    stderr (exit 2 for a bad flag or a missing source, 1 when the kit or the backend fails)."""
    investigator = open_kit().investigator()
    try:
        return action(investigator)
    except (WindowError, SourceRequired) as exc:
        fail(str(exc), 2)
    except KitError as exc:
        fail(str(exc))


def _hint_unknown(
    inv: Investigator, since: str | None, until: str | None, sources: list[str] | None
) -> SourceCheck:
    """Say on stderr which named sources the catalog has no events from (a typo, or a real
    source that sent nothing: the command still runs, so that is shown as the gap it is)."""
    from rich.text import Text

    check = inv.check_sources(inv.window(since, until), sources or ())
    for line in check.hints():
        err.print(Text.assemble(("hint:", "yellow"), " ", line), highlight=False)
    return check


def _with_check(doc: dict[str, Any], check: SourceCheck) -> dict[str, Any]:
    return {**doc, "unknown_sources": check.to_json()}


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def _print(as_json: bool, doc: dict[str, Any], render: Callable[[], None]) -> None:

    if as_json:
        print_json(doc)
    else:
        render()


app = commands()


@app.command()
def audit(
    source: SourceOpt = None,
    event_type: EventTypeOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    top: Annotated[int, typer.Option(min=1, help="Entities to list.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Deliveries by status per source / event type / ingest day, rejection reasons ranked,
    duplicate rate, the most troubled entities and duplicate storms."""
    from pik.investigate.console import render_audit

    check, report = _run(
        lambda inv: (
            _hint_unknown(inv, since, until, source),
            inv.audit(
                inv.window(since, until), sources=source or (), event_type=event_type, top=top
            ),
        )
    )
    _print(as_json, _with_check(report.to_json(), check), lambda: render_audit(out, report))


@app.command()
def gaps(
    source: SourceOpt = None,
    event_type: EventTypeOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    granularity: Annotated[
        Granularity, typer.Option(help="Bucket size.", case_sensitive=False)
    ] = Granularity.HOUR,
    by: Annotated[
        Axis,
        typer.Option(help="event: by event time (missing data); arrival: by ingest time."),
    ] = Axis.EVENT,
    threshold: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Flag buckets under this share of the median."),
    ] = DEFAULT_THRESHOLD,
    as_json: JsonOpt = False,
) -> None:
    """Windows with no events, or far fewer than the window's usual (median) bucket:
    the "missing day" playbook."""
    from pik.investigate.console import render_gaps

    check, report = _run(
        lambda inv: (
            _hint_unknown(inv, since, until, source),
            inv.gaps(
                inv.window(since, until),
                sources=source or (),
                event_type=event_type,
                granularity=granularity,
                axis=by,
                threshold=threshold,
            ),
        )
    )
    _print(as_json, _with_check(report.to_json(), check), lambda: render_gaps(out, report))


@app.command()
def lag(
    source: SourceOpt = None,
    event_type: EventTypeOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    latest: Annotated[
        int,
        typer.Option(
            min=0,
            max=LATE_KEEP,
            help=f"Latest-arriving events to list (at most {LATE_KEEP}: what the index keeps).",
        ),
    ] = DEFAULT_LATEST,
    by: Annotated[
        Axis,
        typer.Option(
            help="event (default): events whose event time is in the window; arrival: "
            "what arrived in the window whatever its event time (finds late data)."
        ),
    ] = Axis.EVENT,
    as_json: JsonOpt = False,
) -> None:
    """Lateness percentiles (p50/p95/p99/max) per source / event type / event day, and the
    latest-arriving events: the "late data" playbook (use --by arrival)."""
    from pik.investigate.console import render_lag

    check, report = _run(
        lambda inv: (
            _hint_unknown(inv, since, until, source),
            inv.lag(
                inv.window(since, until),
                sources=source or (),
                event_type=event_type,
                latest=latest,
                axis=by,
            ),
        )
    )
    _print(as_json, _with_check(report.to_json(), check), lambda: render_lag(out, report))


@app.command()
def report(
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the HTML report.")] = Path(
        "report.html"
    ),
    source: SourceOpt = None,
    event_type: EventTypeOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A self-contained HTML investigation report: events per hour with gaps marked, lag
    distribution, rejection reasons, duplicate storms."""
    from pik.investigate.report_html import render_report

    data = _run(
        lambda inv: inv.report(
            inv.window(since, until), sources=source or (), event_type=event_type
        )
    )
    html = render_report(data)
    try:
        out_file.write_text(html, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out_file}: {exc.strerror}", 2)
    size = len(html.encode("utf-8"))
    found = sum(len(s.gaps) for s in data.gaps.series)
    storms = len(data.audit.storms)
    summary = {"out": str(out_file), "bytes": size, "gaps": found, "duplicate_storms": storms}
    _print(
        as_json,
        {**summary, **data.to_json()},
        lambda: out.print(
            f"wrote {out_file} ({size:,} bytes): {_count(found, 'gap')}, "
            f"{_count(storms, 'duplicate storm')}, "
            f"{_count(sum(data.audit.totals.values()), 'delivery', 'deliveries')}",
            highlight=False,
        ),
    )
