"""Every shell example in README.md and docs/*.md runs as written against a ``pik up``.

The examples are the fenced ``bash``/``sh``/``shell`` blocks. ``EXAMPLES`` lists each one by its
file and first line: run it, run it without some lines (long-running or slow commands, each
with its reason), or not at all (real AWS, a synopsis with placeholders), with the reason. A
block that is not listed, or a listed one that is gone, fails the first test, so a doc cannot
gain an example nobody runs.

The second test starts ``pik up`` on free ports and runs the listed blocks in one bash session,
in the order a reader meets them (README, the quickstart, then the other docs), with ``set -euo
pipefail``: the quickstart's exports (``API_URL``, ``AWS_ENDPOINT_URL``, ``EVENT_ID``) carry on,
as they would in the reader's shell. The only rewrite is the documented ports (4566, 8080) to
the test's. It runs in a scratch directory whose ``.venv`` is this checkout's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import base_env, free_port, running

ROOT = Path(__file__).resolve().parents[2]
SHELL_TAGS = {"bash", "sh", "shell"}
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
# An untagged block that starts with a command is an example the test would miss: tag it.
COMMAND = re.compile(r"^(\S+=\S+ )*(pik|curl|aws|make|export|printf|echo)\s+[\w$\"'-]+(\s|$)")


@dataclass(frozen=True)
class Run:
    """Run the block; ``drop`` lines starting with these texts (why: ``because``); its output
    must contain every text of ``expect``."""

    expect: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    because: str = ""


@dataclass(frozen=True)
class Skip:
    reason: str


REAL_AWS = Skip("needs real AWS (a deployed stack)")
SYNOPSIS = Skip("a synopsis: its placeholders and [optional] flags are not literal")
SLOW_DEMO = "pik demo takes about a minute (tests/integration/test_demo.py runs it)"

EXAMPLES: dict[tuple[str, str], Run | Skip] = {
    ("README.md", "make demo   # creates .venv"): Skip("installs the kit and runs for minutes"),
    ("README.md", "make up                      # = .venv/bin/pik up"): Run(
        expect=('"status":"ACCEPTED"', "event 9664ab5e2fff9ed9"),
        drop=("make up",),
        because="long-running: the test's own pik up stands in for it",
    ),
    ("docs/quickstart.md", "make demo"): Skip("installs the kit and runs pik demo (a minute)"),
    ("docs/quickstart.md", ". .venv/bin/activate        # puts `pik` on PATH"): Skip(
        "long-running pik up: the test starts it itself"
    ),
    ("docs/quickstart.md", ". .venv/bin/activate"): Run(expect=('"status":"ok"',)),
    ("docs/quickstart.md", 'curl -s -X POST "$API_URL/ingest"'): Run(
        expect=('"event_id":"9664ab5e2fff9ed9',)  # a duplicate by now: the README sent it
    ),
    ("docs/quickstart.md", "printf '%s\\n' \\"): Run(
        expect=('{"accepted":2,"duplicate":0,"rejected":1',)
    ),
    ("docs/quickstart.md", 'EVENT_ID=$(curl -s -X POST "$API_URL/ingest"'): Run(
        expect=('"status":"DUPLICATE"',)
    ),
    ("docs/quickstart.md", 'pik explain "$EVENT_ID"'): Run(expect=("ACCEPTED",)),
    ("docs/quickstart.md", "pik audit --source demo --since 1d"): Run(),
    ("docs/quickstart.md", "pik demo --out demo-report.html"): Run(
        drop=("pik demo",), because=SLOW_DEMO
    ),
    (
        "docs/quickstart.md",
        "pik replay --entity-id user_123 --start 2025-12-28 --end 2025-12-29 --dry-run",
    ): Run(expect=("dry run: would send",)),
    (
        "docs/quickstart.md",
        "pik replay --entity-id user_123 --start 2025-12-28 --end 2025-12-29",
    ): Run(expect=("COMPLETED",)),
    ("docs/quickstart.md", "pik process --once"): Run(expect=("wrote 1 versions",)),
    ("docs/quickstart.md", "pik explain \"$EVENT_ID\" | sed -n '/replays:/,$p'"): Run(
        expect=("replays: 1",)
    ),
    ("docs/quickstart.md", "pik report --source demo --source checkout"): Run(
        expect=("wrote report.html",)
    ),
    ("docs/deploy.md", "pik deploy --stream-arn arn:aws:kinesis"): REAL_AWS,
    ("docs/deploy.md", "cd /path/to/checkout"): REAL_AWS,
    ("docs/deploy.md", "export $(aws cloudformation describe-stacks --stack-name pik \\"): REAL_AWS,
    ("docs/deploy.md", 'curl --aws-sigv4 "aws:amz:eu-west-1:execute-api"'): REAL_AWS,
    ("docs/deploy.md", "aws lambda update-event-source-mapping"): REAL_AWS,
    ("docs/deploy.md", "pik deploy --stream-arn ... --enable-processor --run"): REAL_AWS,
    ("docs/deploy.md", "BUCKET=$(aws cloudformation describe-stacks --stack-name pik \\"): REAL_AWS,
    ("docs/http-api.md", 'curl -X POST "$API_URL/ingest"'): Run(expect=("DUPLICATE",)),
    ("docs/http-api.md", "printf '%s\\n'"): Run(expect=('"accepted":1,',)),
    ("docs/index.md", 'curl -s -X POST "$API_URL/ingest"'): Run(expect=("ACCEPTED",)),
    ("docs/index.md", "pik bootstrap"): Run(expect=('"claimed"',)),
    ("docs/investigate.md", "export AWS_ENDPOINT_URL=http://127.0.0.1:4566"): Run(
        drop=("pik demo",), because=SLOW_DEMO
    ),
    ("docs/investigate.md", 'pik explain "$EVENT_ID"'): Run(expect=('"is_latest"',)),
    ("docs/playbooks.md", "pik explain <event_id>"): SYNOPSIS,
    ("docs/processor.md", "pik process --once"): Run(
        expect=("refused: exit 3",), drop=("pik process   ",), because="long-polls until Ctrl-C"
    ),
    ("docs/processor.md", "pik aggregates show user_123 [--day"): SYNOPSIS,
    ("docs/processor.md", "pik aggregates show user_123"): Run(expect=('"Items"', "daily_")),
    ("docs/reliability.md", "make reliability"): Skip("the reliability suite: ~15 minutes"),
    ("docs/reliability.md", "AWS_ENDPOINT_URL=http://127.0.0.1:<moto>"): SYNOPSIS,
    ("docs/reliability.md", ".venv/bin/python bench/loadgen.py"): Skip(
        "a 30 s load benchmark (bench/, not a test)"
    ),
    ("docs/replay.md", "pik replay --entity-id user_123 --start 2025-12-28T00:00:00Z"): Run(
        expect=("COMPLETED",)
    ),
    ("docs/replay.md", "pik replays list                 # newest first"): SYNOPSIS,
    ("docs/replay.md", 'curl -X POST "$API_URL/replay"'): Run(expect=('"replay_id"',)),
    ("docs/schemas.md", "pik schemas list [--json]"): SYNOPSIS,
    ("docs/schemas.md", "pik local --port 4566 & sleep 3"): Run(
        expect=("20 accepted",),
        drop=("pik local",),
        because="the test's own pik up is the embedded AWS",
    ),
    ("docs/schemas.md", "export PIK_REGISTRY_USER=pik-tap"): Skip(
        "needs a Confluent-compatible registry at a real URL (tests/integration/"
        "test_tap_registry.py taps the same binding against confluent-kafka's mock:// one)"
    ),
    ("docs/schemas.md", "python - <<'EOF'"): Run(expect=("20 accepted",)),
    ("docs/schemas.md", "printf '[schemas]\\nregistry = \"registry\"\\n' > pik.toml"): Run(
        expect=("registered demo/heartbeat v2", '"reason":"schema_mismatch"', "demo/heartbeat/v2")
    ),
    ("docs/tap.md", "# with `pik up` running: create the stream"): Run(
        expect=("archived: 200 accepted",),
        drop=("PIK_CONFIG=pik.toml pik tap --stream orders  ",),
        because="follows the stream until Ctrl-C",
    ),
    ("docs/troubleshooting.md", 'curl -s -X POST "$API_URL/ingest" -H "Authorization'): Skip(
        "needs a pik up started with PIK_API_TOKEN (tests/reliability/test_security.py)"
    ),
}

# The order a reader meets them: the README, the quickstart (which sets up the shell), the rest.
ORDER = ["README.md", "docs/quickstart.md"]


@dataclass
class Block:
    path: str
    line: int
    text: str
    key: tuple[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.key = (self.path, self.text.splitlines()[0].strip())


def doc_files() -> list[str]:
    docs = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))
    return [*ORDER, *(d for d in docs if d not in ORDER)]


def shell_blocks() -> tuple[list[Block], list[str]]:
    """The tagged shell blocks, and the untagged blocks that look like commands."""
    blocks, untagged = [], []
    for path in doc_files():
        text = (ROOT / path).read_text(encoding="utf-8")
        for found in FENCE.finditer(text):
            tag, body = found.group(1), found.group(2)
            line = text[: found.start()].count("\n") + 1
            if tag in SHELL_TAGS and body.strip():
                blocks.append(Block(path, line, body))
            elif not tag:
                commands = [ln for ln in body.splitlines() if ln.strip() and ln[0] != "#"]
                if commands and COMMAND.match(commands[0]):
                    untagged.append(f"{path}:{line}: {commands[0][:60]}")
    return blocks, untagged


def _matches(key: tuple[str, str], block: Block) -> bool:
    path, first = key
    return block.path == path and block.key[1].startswith(first)


def _entry(block: Block) -> tuple[tuple[str, str], Run | Skip] | None:
    """The longest listed first line this block starts with (so listed prefixes can nest)."""
    keys = [k for k in EXAMPLES if _matches(k, block)]
    if not keys:
        return None
    key = max(keys, key=lambda k: len(k[1]))
    return key, EXAMPLES[key]


def test_every_shell_example_in_the_docs_is_listed() -> None:
    blocks, untagged = shell_blocks()
    assert untagged == [], "tag these command blocks ```bash so they are run"
    unlisted = [f"{b.path}:{b.line}: {b.key[1]}" for b in blocks if _entry(b) is None]
    assert unlisted == [], "list each new example in EXAMPLES (run it, or say why not)"
    used = {entry[0] for b in blocks if (entry := _entry(b)) is not None}
    assert sorted(set(EXAMPLES) - used) == [], "these EXAMPLES are no longer in the docs"
    twice = [b.key for b in blocks if [c.key for c in blocks].count(b.key) > 1]
    assert twice == [], "two blocks with one first line in one file: list a longer prefix"


def _script(blocks: list[Block], aws_port: int, api_port: int) -> tuple[str, list[Block]]:
    parts = ["set -euo pipefail"]
    ran: list[Block] = []
    for block in blocks:
        entry = _entry(block)
        assert entry is not None
        rule = entry[1]
        if isinstance(rule, Skip):
            continue
        lines = block.text.splitlines()
        kept = [ln for ln in lines if not any(ln.startswith(d) for d in rule.drop)]
        assert len(kept) < len(lines) or not rule.drop, f"{block.key}: nothing to drop"
        body = "\n".join(kept)
        body = body.replace("127.0.0.1:4566", f"127.0.0.1:{aws_port}")
        body = body.replace("127.0.0.1:8080", f"127.0.0.1:{api_port}")
        marker = f"::example {len(ran)}"
        parts.append(f"printf '\\n%s\\n' '{marker}'; printf '\\n%s\\n' '{marker}' >&2\n{body}")
        ran.append(block)
    parts.append("printf '\\n::done\\n'")
    return "\n".join(parts) + "\n", ran


def test_the_listed_examples_run_as_written_against_pik_up(tmp_path: Path) -> None:
    missing = [tool for tool in ("aws", "jq", "curl") if shutil.which(tool) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the docs' examples need {', '.join(missing)} on PATH")
        pytest.skip(f"the docs' examples need {', '.join(missing)} on PATH")
    blocks, _ = shell_blocks()
    api, aws = free_port(), free_port()
    work = tmp_path / "reader"
    work.mkdir()
    venv = Path(sys.executable).parent.parent
    (work / ".venv").symlink_to(venv)
    script, ran = _script(blocks, aws, api)
    env = base_env(
        PATH=f"{os.environ['PATH']}",
        HOME=str(tmp_path),  # no ~/.aws of this machine: the docs' dummy keys must suffice
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
    )
    with running(
        "up", "--port", str(api), "--aws-port", str(aws),
        env=env, ready_url=f"http://127.0.0.1:{api}/healthz",
    ):  # fmt: skip
        done = subprocess.run(
            ["bash", "-c", script], cwd=work, env=env, capture_output=True, timeout=300
        )
    out, err = done.stdout.decode(), done.stderr.decode()
    said = dict(_split(out))
    complained = dict(_split(err))
    last = max(said, default=-1)
    if done.returncode != 0 or "::done" not in out:
        block = ran[last]
        pytest.fail(
            f"{block.path}:{block.line} failed (exit {done.returncode}):\n{block.text}\n"
            f"--- stdout\n{said.get(last, '')[-1500:]}\n--- stderr\n"
            f"{complained.get(last, '')[-1500:]}"
        )
    for n, block in enumerate(ran):
        entry = _entry(block)
        assert entry is not None and isinstance(entry[1], Run)
        for text in entry[1].expect:
            assert text in said.get(n, ""), (
                f"{block.path}:{block.line}: {text!r} not in\n{said.get(n)}"
            )
        assert "Traceback" not in complained.get(n, ""), f"{block.path}:{block.line}"


def _split(text: str) -> list[tuple[int, str]]:
    """Output per example, by the markers the script prints."""
    pieces = re.split(r"^::example (\d+)\n", text, flags=re.M)
    return [(int(pieces[i]), pieces[i + 1]) for i in range(1, len(pieces) - 1, 2)]
