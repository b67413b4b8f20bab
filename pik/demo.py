"""``pik demo``: a scripted incident, end to end over real HTTP on the configured backend.

It starts the HTTP API on a free loopback port and sends three days of traffic from two sources
(``pik.demo_incident``: a missing window, late data, a duplicate storm, a few bad events), with
the ingest clock moved along the script so each request arrives when the story says. Then it
investigates as the on-call engineer would, with the code behind ``pik gaps``, ``pik lag``,
``pik audit`` and ``pik explain``, checks that each planted problem was found, and writes the
``pik report`` HTML page.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvicorn
from rich.console import Console

from infra.clock import Clock, FixedClock, SystemClock
from infra.errors import KitError
from infra.index_queries import DynamoIndexQueries
from pik.demo_incident import (
    CHECKOUT,
    DAYS,
    LATE_AFTER,
    MOBILE,
    PHONES,
    Incident,
    Planted,
    incident_window,
    plan_incident,
)
from pik.explain import explain
from pik.http import create_app
from pik.investigate import AuditReport, GapReport, IndexCatalog, LagReport
from pik.investigate.console import sparkline
from pik.investigate.report_html import render_report
from pik.investigate.service import DEFAULT_LATEST, InvestigationReport
from pik.investigate.window import Window, iso
from pik.kit import Kit, build_kit
from pik.render import human_ms
from pik.settings import Settings

__all__ = ["DEFAULT_REPORT", "LATEST", "run_demo"]

DEFAULT_REPORT = Path("pik-demo-report.html")
LATEST = 50  # `pik lag --latest`: more than the planted late events, so the cut shows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _post(url: str, body: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class _Server:
    """The HTTP API on a free loopback port, in a thread, on a clock the script moves."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.kit = build_kit(settings, clock=clock)
        self.app = create_app(self.kit)
        self.port = _free_port()
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_config=None, access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise KitError("the demo HTTP server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.app.state.committer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _tag(taken: set[str]) -> str:
    """A suffix for the source names when the backend already has the demo's sources in the
    window (a second run on a kept backend): the findings then concern this run only."""
    n, tag = 1, ""
    while {CHECKOUT + tag, MOBILE + tag} & taken:
        n += 1
        tag = f"-{n}"
    return tag


def _seed(incident: Incident, settings: Settings, script_clock: FixedClock) -> dict[str, Any]:
    """Send every request of the script, the ingest clock at each request's time."""
    counts = {"requests": 0, "accepted": 0, "duplicate": 0, "rejected": 0}
    with _Server(settings, script_clock) as server:
        for send in incident.sends:
            script_clock.advance(seconds=(send.at - script_clock.now()).total_seconds())
            code, answer = _post(server.url + send.path, send.body)
            if code >= 500 or ("status" not in answer and "accepted" not in answer):
                raise KitError(f"the demo's {send.what} request failed: {code} {answer}")
            counts["requests"] += 1
            if "accepted" in answer:  # a batch answer
                for key in ("accepted", "duplicate", "rejected"):
                    counts[key] += answer[key]
            else:
                counts[answer["status"].lower()] += 1
        metrics = {
            name: server.kit.metrics.counter(name)
            for name in ("IngestCount", "DuplicateCount", "RejectedCount")
        }
    return {**counts, "metrics": metrics}


def _window_flags(window: Window) -> str:
    return f"--since {iso(window.start)} --until {iso(window.end)}"


class _Story:
    """The narration: one section per step, with the command a user would type."""

    def __init__(self, console: Console | None) -> None:
        self.console = console
        self.commands: list[str] = []

    def say(self, text: str = "") -> None:
        if self.console:
            self.console.print(text, highlight=False)

    def step(self, number: int, question: str, command: str) -> None:
        self.commands.append(command)
        self.say(f"\n[bold]{number}. {question}[/bold]")
        self.say(f"   [cyan]$ {command}[/cyan]")

    def check(self, ok: bool, found: str, expected: str) -> bool:
        if ok:
            self.say(f"   [green]✓[/green] {found}")
        else:
            self.say(f"   [red]✗ found {found}; planted {expected}[/red]")
        return ok


def _found_gap(report: GapReport, planted: Planted, story: _Story) -> tuple[bool, dict[str, Any]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for series in report.series:
        found[series.source] = [g.to_json() for g in series.gaps]
        story.say(f"   {series.source + ' / ' + (series.event_type or '*'):20} {sparkline(series)}")
        for g in series.gaps:
            story.say(
                f"   {'':20} {g.kind.value} {iso(g.start)} → {iso(g.end)}: {g.count} events, "
                f"usually {series.baseline:g} an hour"
            )
    expected = [{"start": iso(planted.gap.start), "end": iso(planted.gap.end), "kind": "missing"}]
    got = [{k: g[k] for k in ("start", "end", "kind")} for g in found.get(planted.checkout, [])]
    hours = (planted.gap.end - planted.gap.start) // timedelta(hours=1)
    ok = story.check(
        got == expected and found.get(planted.mobile) == [],
        f"{planted.checkout}: nothing from {iso(planted.gap.start)} to {iso(planted.gap.end)} "
        f"({hours} h); {planted.mobile}: no gaps",
        f"{expected} and no gap for {planted.mobile}",
    )
    return ok, found


def _found_late(report: LagReport, planted: Planted, story: _Story) -> tuple[bool, dict[str, Any]]:
    later_than = LATE_AFTER // timedelta(milliseconds=1)
    late = [e for e in report.latest if e.lag_ms > later_than]
    for group in report.overall:
        s = group.stats
        story.say(
            f"   {group.source + ' / ' + group.event_type:20} {s.count:,} events, "
            f"p50 {human_ms(s.p50_ms)}, p95 {human_ms(s.p95_ms)}, p99 {human_ms(s.p99_ms)}, "
            f"max {human_ms(s.max_ms)}"
        )
    for e in late[:3]:
        story.say(
            f"   {human_ms(e.lag_ms):>8} late: {e.entity_id}, event {e.event_time[:16]}Z, "
            f"arrived {e.ingest_time[:16]}Z"
        )
    entities = sorted({e.entity_id for e in late})
    ok = story.check(
        len(late) == planted.late_count and entities == sorted(planted.late_entities),
        f"{len(late)} events more than {human_ms(later_than)} late, all from "
        f"{', '.join(entities) or 'nobody'}: offline phones that synced at "
        f"{iso(planted.late_synced_at)}",
        f"{planted.late_count} from {', '.join(planted.late_entities)}",
    )
    found = {
        "late_count": len(late),
        "late_entities": entities,
        "overall": [g.to_json() for g in report.overall],
        "latest": [e.to_json() for e in late[:3]],
    }
    return ok, found


def _found_storm(
    report: AuditReport, planted: Planted, story: _Story
) -> tuple[bool, bool, dict[str, Any]]:
    t = report.totals
    story.say(
        f"   {sum(t.values()):,} deliveries: {t['ACCEPTED']:,} accepted, {t['DUPLICATE']:,} "
        f"duplicate ({report.duplicate_rate:.1%} of valid), {t['REJECTED']:,} rejected"
    )
    for each in report.storms:
        story.say(
            f"   duplicate storm {iso(each.start)} → {iso(each.end)}: {each.duplicates} "
            f"duplicates (usually {each.baseline:g} an hour)"
        )
    for e in report.top_entities[:3]:
        story.say(
            f"   troubled entity {e.entity_id} ({e.source}): {e.duplicate} duplicate, "
            f"{e.rejected} rejected"
        )
    reasons = {r.reason: r.count for r in report.reasons}
    story.say("   rejected: " + ", ".join(f"{r} x{n}" for r, n in reasons.items()))
    storm = report.storms[0] if len(report.storms) == 1 else None
    top = report.top_entities[0] if report.top_entities else None
    storm_ok = story.check(
        storm is not None
        and (storm.start, storm.end, storm.duplicates)
        == (planted.storm.start, planted.storm.end, planted.storm_duplicates)
        and top is not None
        and (top.entity_id, top.duplicate) == (planted.storm_entity, planted.storm_duplicates),
        f"one storm at {iso(storm.start) if storm else '-'}, "
        f"{storm.duplicates if storm else 0} duplicates; top offender "
        f"{top.entity_id if top else '-'}",
        f"{iso(planted.storm.start)}, {planted.storm_duplicates} from {planted.storm_entity}",
    )
    reasons_ok = story.check(
        reasons == planted.rejections,
        "every bad event quarantined with its reason",
        str(planted.rejections),
    )
    found = {
        "totals": report.to_json()["totals"],
        "duplicate_rate": round(report.duplicate_rate, 4),
        "storms": [s.to_json() for s in report.storms],
        "top_entities": [e.to_json() for e in report.top_entities],
        "rejections": reasons,
    }
    return storm_ok, reasons_ok, found


def _most_repeated(report: AuditReport) -> str | None:
    """The storm's most repeated event id (the first of equals)."""
    tops = [e for s in report.storms[:1] for e, _ in s.top_events[:1]]
    return tops[0] if tops else None


def _found_retries(
    doc: dict[str, Any] | None, planted: Planted, story: _Story
) -> tuple[bool, dict[str, Any] | None]:
    if doc is None:
        return story.check(False, "no storm event to explain", "one"), None
    entity = doc["event"].get("entity_id")
    deliveries = doc.get("deliveries") or []
    last = f" up to {str(deliveries[-1].get('arrived', ''))[:19]}Z" if deliveries else ""
    story.say(
        f"   {entity}: first delivered {str(doc['event'].get('ingest_time', ''))[:19]}Z, "
        f"then {doc['duplicates']} duplicates{last}"
    )
    ok = story.check(
        doc["duplicates"] == planted.storm_retries and entity == planted.storm_entity,
        f"{entity} sent it {doc['duplicates']} more times: a retry loop, not new data",
        f"{planted.storm_retries} duplicates from {planted.storm_entity}",
    )
    found = {"event_id": doc["event_id"], "entity_id": entity, "duplicates": doc["duplicates"]}
    return ok, found


def _write_report(data: InvestigationReport, out: Path, story: _Story) -> dict[str, Any]:
    html = render_report(data)
    out.write_text(html, encoding="utf-8")
    size = len(html.encode("utf-8"))
    story.say(f"   wrote {out.resolve()} ({size:,} bytes)")
    return {"path": str(out.resolve()), "bytes": size}


def _investigate(
    kit: Kit, planted: Planted, out: Path, story: _Story
) -> tuple[dict[str, bool], dict[str, Any]]:
    """Each playbook's command, as the on-call engineer would run them; what each found."""
    inv = kit.investigator()
    window, sources = planted.window, [planted.checkout, planted.mobile]
    flags = f"--source {planted.checkout} --source {planted.mobile} {_window_flags(window)}"
    checks: dict[str, bool] = {}
    found: dict[str, Any] = {}

    story.step(1, f'"The {planted.checkout} dashboard has a hole in it"', f"pik gaps {flags}")
    gaps = inv.gaps(window, sources=sources)
    checks["missing_window"], found["gaps"] = _found_gap(gaps, planted, story)

    story.step(
        2,
        f'"The {planted.mobile} numbers for {window.start.date()} went up days later"',
        f"pik lag {flags} --latest {LATEST}",
    )
    lag = inv.lag(window, sources=sources, latest=LATEST)
    checks["late_data"], found["lag"] = _found_late(lag, planted, story)

    story.step(3, '"DuplicateCount spiked, and some events were refused"', f"pik audit {flags}")
    audit = inv.audit(window, sources=sources)
    checks["duplicate_storm"], checks["rejections"], found["audit"] = _found_storm(
        audit, planted, story
    )

    repeated = _most_repeated(audit)
    story.step(4, "What happened to one of the repeated events?", f"pik explain {repeated or '?'}")
    doc = explain(repeated, kit.index, kit.reader) if repeated else None
    checks["explain"], found["explain"] = _found_retries(doc, planted, story)

    story.step(5, "Write it up for the incident ticket", f"pik report {flags} --out {out}")
    # the findings above are the report's: `pik report` runs the same three Queries
    data = InvestigationReport(
        window=window,
        sources=sources,
        event_type=None,
        audit=audit,
        gaps=gaps,
        lag=replace(lag, latest=lag.latest[:DEFAULT_LATEST]),
        generated_at=iso(kit.clock.now()),
    )
    found["report"] = _write_report(data, out, story)
    return checks, found


def run_demo(
    settings: Settings,
    console: Console | None,
    *,
    out: Path = DEFAULT_REPORT,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """Play the incident, investigate it, write the report; the result says what was planted,
    what was found and whether each finding matches (``checks``, ``ok``)."""
    clock = clock or SystemClock()
    began = time.monotonic()
    story = _Story(console)
    kit = build_kit(settings, clock=clock)
    kit.bootstrap().run(demo_stream=False)
    now = clock.now()
    catalog = IndexCatalog(DynamoIndexQueries(kit.clients.dynamodb(), kit.names.events_table))
    incident = plan_incident(now, _tag(set(catalog.sources(incident_window(now)) or [])))
    planted = incident.planted

    story.say(
        f"[bold]pik demo[/bold]: {DAYS} days of traffic, {iso(planted.window.start)} → "
        f"{iso(planted.window.end)}, sent over HTTP with a scripted ingest clock"
    )
    story.say(
        f"   {planted.checkout} / order: a collector forwards orders hourly\n"
        f"   {planted.mobile} / heartbeat: {len(PHONES)} phones, one heartbeat an hour each"
    )
    script_clock = FixedClock(incident.sends[0].at)
    seeded = _seed(incident, settings, script_clock)
    seeded["events"] = incident.events()
    story.say(
        f"   sent {seeded['events']:,} events in {seeded['requests']} requests: "
        f"{seeded['accepted']:,} accepted, {seeded['duplicate']:,} duplicate, "
        f"{seeded['rejected']} rejected ({time.monotonic() - began:.1f} s)"
    )
    story.say("   Something went wrong in there. Investigate as the on-call engineer would:")

    checks, found = _investigate(kit, planted, out, story)

    ok = all(checks.values())
    elapsed = round(time.monotonic() - began, 1)
    missed = ", ".join(name for name, passed in checks.items() if not passed)
    verdict = "[green]all planted problems found[/green]" if ok else f"[red]missed: {missed}[/red]"
    story.say(f"\n[bold]{verdict}[/bold] in {elapsed} s")
    report = found.pop("report")
    return {
        "ok": ok,
        "checks": checks,
        "planted": planted.to_json(),
        "found": found,
        "seeded": seeded,
        "commands": story.commands,
        "report": report,
        "elapsed_s": elapsed,
    }
