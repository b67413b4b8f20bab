"""``pik audit``, ``pik gaps`` and ``pik report`` as a user runs them, against a few hours of
events on the embedded AWS (one hour missing); the report is opened in a real headless browser.
The known answers of the full incident are checked in the unit and integration tiers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consumers.ingest import Submission
from infra.clock import FixedClock
from infra.local import EmbeddedAws
from pik.kit import build_kit
from schemas.codec import Provenance
from schemas.envelope import parse_body
from tests.conftest import fresh_settings
from tests.e2e.conftest import base_env, run_pik

T0 = datetime(2025, 12, 28, tzinfo=UTC)
SOURCE, HOURS, MISSING = "shop", 6, 3  # events in hours 0-5 except 03:00
WINDOW = ("--since", "2025-12-28T00:00:00Z", "--until", "2025-12-28T06:00:00Z")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def env(aws_server: EmbeddedAws) -> dict[str, str]:
    settings = fresh_settings(aws_server.endpoint_url)
    clock = FixedClock(T0)
    kit = build_kit(settings, clock=clock)
    kit.bootstrap().run(demo_stream=False)
    for hour in range(HOURS):
        clock.advance(
            seconds=(T0 + timedelta(hours=hour, minutes=50) - clock.now()).total_seconds()
        )
        batch = []
        for n in range(3 if hour != MISSING else 0):
            at = T0 + timedelta(hours=hour, minutes=10 * n)
            raw = json.dumps({"source": SOURCE, "event_type": "order", "entity_id": f"c{n}",
                              "event_time": at.isoformat(), "payload": {"n": n}}).encode()  # fmt: skip
            prov = Provenance(f"http:h{hour}-{n}:0", "http", request_id=f"h{hour}-{n}")
            batch.append(Submission(raw, prov, parse_body(raw), "0"))
        kit.sink.ingest(batch, label=f"hour-{hour}")
    return base_env(
        AWS_ENDPOINT_URL=aws_server.endpoint_url,
        PIK_EVENTS_TABLE=settings.events_table,
        PIK_BUCKET=settings.bucket,
    )


def test_without_a_source_the_catalog_names_the_sources(env: dict[str, str]) -> None:
    done = run_pik("audit", *WINDOW, "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert SOURCE in json.loads(done.stdout)["sources"]


def test_bad_window_says_so_in_one_line(env: dict[str, str]) -> None:
    done = run_pik("audit", "--since", "yesterday", env=env)
    assert done.returncode == 2
    [line] = done.stderr.decode().strip().splitlines()
    assert "yesterday" in line


def test_gaps_json_names_the_missing_hour(env: dict[str, str]) -> None:
    gaps = run_pik("gaps", "--source", SOURCE, *WINDOW, "--json", env=env)
    assert gaps.returncode == 0, gaps.stderr
    [series] = json.loads(gaps.stdout)["series"]
    assert [(g["kind"], g["start"]) for g in series["gaps"]] == [
        ("missing", "2025-12-28T03:00:00Z")
    ]


def test_an_unknown_source_is_a_hint_naming_the_nearest_known_one(env: dict[str, str]) -> None:
    for command in ("gaps", "lag", "audit"):
        typo = run_pik(command, "--source", "shpo", *WINDOW, env=env)
        assert typo.returncode == 0, (command, typo.stderr)  # still runs: it may be a real gap
        [hint] = typo.stderr.decode().strip().splitlines()
        assert "no events from source shpo in the catalog" in hint, command
        assert f"known sources: {SOURCE}" in hint and f"did you mean {SOURCE}?" in hint, hint
        doc = json.loads(run_pik(command, "--source", "shpo", *WINDOW, "--json", env=env).stdout)
        assert doc["unknown_sources"] == [{"source": "shpo", "did_you_mean": [SOURCE]}]
        known = run_pik(command, "--source", SOURCE, *WINDOW, "--json", env=env)
        assert known.returncode == 0 and not known.stderr.strip(), known.stderr
        assert json.loads(known.stdout)["unknown_sources"] == []


def test_the_report_is_written_and_renders_in_a_browser(
    env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    done = run_pik("report", "--out", str(out), "--source", SOURCE, *WINDOW, env=env)
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.decode().split())  # the console wraps long lines
    assert "1 gap, 0 duplicate storms, 15 deliveries" in said
    if CHROMIUM is None:
        if os.environ.get("CI"):  # `make test` installs it (tests/tools/ensure-chromium)
            pytest.fail("no chromium in CI: tests/tools/ensure-chromium did not install it")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    browser = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--hide-scrollbars",
        "--window-size=1000,2400",
    ]
    dom = subprocess.run(
        [*browser, "--dump-dom", out.as_uri()], capture_output=True, timeout=90, check=True
    ).stdout.decode()
    # What the browser parsed, not what the file says: the charts are there as SVG.
    assert dom.count("<svg") >= 2, dom[:500]
    assert "2025-12-28T03:00:00Z" in dom  # the missing hour, listed in the gaps table
    shot = tmp_path / "report.png"
    subprocess.run(
        [*browser, f"--screenshot={shot}", out.as_uri()],
        capture_output=True,
        timeout=90,
        check=True,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


# -- a week ending mid-hour: a young source with a hole, late backfill, an unreadable record ---
END = datetime(2026, 1, 10, 12, 40, tzinfo=UTC)  # the report's window ends inside 12:00-13:00
WEEK = ("--since", "2026-01-03T12:40:00Z", "--until", "2026-01-10T12:40:00Z")
YOUNG, BACKFILL = "young", "backfill"
YOUNG_FROM = END.replace(minute=0) - timedelta(hours=48)  # the source is two days old
HOLE = [YOUNG_FROM + timedelta(hours=h) for h in (15, 16, 17)]  # three empty hours
PARTIAL_EVENTS = 5  # in the last five minutes


def _submission(body: dict[str, object] | bytes, key: str) -> Submission:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Submission(
        raw, Provenance(f"http:{key}:0", "http", request_id=key), parse_body(raw), "0"
    )


@pytest.fixture(scope="module")
def week_env(aws_server: EmbeddedAws) -> dict[str, str]:
    settings = fresh_settings(aws_server.endpoint_url)
    clock = FixedClock(YOUNG_FROM)
    kit = build_kit(settings, clock=clock)
    kit.bootstrap().run(demo_stream=False)

    def event(source: str, at: datetime, n: int) -> dict[str, object]:
        return {"source": source, "event_type": "tick", "entity_id": f"e{n}",
                "event_time": at.isoformat(), "payload": {"n": n}}  # fmt: skip

    hours = [YOUNG_FROM + timedelta(hours=h) for h in range(48)]
    young = [
        _submission(event(YOUNG, hour + timedelta(minutes=12 * n), n), f"y{hour:%d%H}-{n}")
        for hour in hours
        if hour not in HOLE
        for n in range(4)
    ]
    for first in range(0, len(young), 60):  # arrivals spread over the two days
        clock.advance(seconds=(hours[first // 4] + timedelta(minutes=59) - clock.now()).seconds)
        kit.sink.ingest(young[first : first + 60], label=f"young-{first}")
    clock.advance(seconds=(END - timedelta(minutes=30) - clock.now()).total_seconds())
    backfill = [  # arrived this week, but its events are from March: none in the window
        _submission(event(BACKFILL, datetime(2025, 3, 1, 9, tzinfo=UTC), n), f"b{n}")
        for n in range(20)
    ]
    kit.sink.ingest([*backfill, _submission(b"{not json", "garbage")], label="backfill")
    clock.advance(seconds=(END - clock.now()).total_seconds())
    partial = [
        _submission(event(YOUNG, END - timedelta(minutes=n + 1), 100 + n), f"p{n}")
        for n in range(PARTIAL_EVENTS)
    ]
    kit.sink.ingest(partial, label="partial")
    return base_env(
        AWS_ENDPOINT_URL=aws_server.endpoint_url,
        PIK_EVENTS_TABLE=settings.events_table,
        PIK_BUCKET=settings.bucket,
    )


def _browser_dom(page: Path, profile: Path) -> str:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium in CI: tests/tools/ensure-chromium did not install it")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--dump-dom", page.as_uri()]  # fmt: skip
    return subprocess.run(browser, capture_output=True, timeout=90, check=True).stdout.decode()


def test_the_report_shows_the_partial_hour_a_young_sources_hole_and_no_data_sources(
    week_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "week.html"
    done = run_pik("report", "--out", str(out), *WEEK, env=week_env)
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.decode().split())
    assert "1 gap," in said, said  # the hole; not the backfill, not _unknown, not the last hour
    dom = _browser_dom(out, tmp_path / "profile")
    text = " ".join(re.sub(r"<[^>]+>", " ", dom).split())
    # the hour the window ends in: its events, shown as partial, not as missing
    assert (
        f"partial hour 2026-01-10T12:00:00Z to 2026-01-10T12:40:00Z: {PARTIAL_EVENTS} events "
        "so far" in text
    ), text[:2000]
    assert 'class="bar-partial"' in dom
    # the young source: usual level from its first events, so its three empty hours are a gap
    assert f"first events at {YOUNG_FROM:%Y-%m-%dT%H:%M:%SZ}" in text
    gap_rows = re.findall(r"<tr><td>(missing|low)</td><td>([^<]+)</td><td>([^<]+)</td>", dom)
    assert gap_rows == [("missing", "2026-01-09T03:00:00Z", "2026-01-09T06:00:00Z")], gap_rows
    # sources with nothing in the window by event time: one line, no chart, not a gap
    assert text.count("no data in window") == 1
    no_data = f"no data in window (by event time): _unknown / all types, {BACKFILL} / all types"
    assert no_data in text
    assert f"<h3>{BACKFILL}" not in dom and "<h3>_unknown" not in dom
    assert re.search(r"gaps\s*<b>1</b>", dom), "the gaps card counts the hole only"
    # the cards say which time they count by, and the charts' axes carry dates
    assert "deliveries<b>" in dom and "by arrival" in text and "by event time" in text
    assert ">01-09<" in dom and ">01-10<" in dom
