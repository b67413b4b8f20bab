"""The user docs keep up with the code: every setting and config key is documented, and every
relative link between the docs points at a file that exists.

The lists of names come from the code (the settings model, the config parsers' key sets), so a
new variable or key fails here until docs/configuration.md names it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import AliasChoices

from consumers.tap.binding import BINDING_KEYS
from infra.aws import SERVICE_ENDPOINT_PREFIX
from pik.config import AGGREGATE_KEYS, TOP_LEVEL_KEYS
from pik.schema_policy import SCHEMAS_KEYS, SOURCE_KEYS
from pik.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"

# The keys each top-level table of the config file takes, from the code that parses it.
TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "tap": tuple(BINDING_KEYS),
    "aggregate": tuple(sorted(AGGREGATE_KEYS)),
    "sources": tuple(SOURCE_KEYS),
    "schemas": tuple(SCHEMAS_KEYS),
}

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$", re.MULTILINE)


def settings_env_vars() -> list[str]:
    """Every environment variable the settings model reads: a field's aliases, or the prefixed
    field name."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    names: list[str] = []
    for field_name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.extend(choice for choice in alias.choices if isinstance(choice, str))
        elif isinstance(alias, str):
            names.append(alias)
        else:
            names.append(f"{prefix}{field_name}".upper())
    return names


def code_spans(text: str) -> set[str]:
    """The text of every inline `code span` of a Markdown document."""
    return {span.strip("`") for span in INLINE_CODE.findall(FENCE.sub("", text))}


def sections(text: str) -> dict[str, str]:
    """Heading text → the body under it, up to the next heading of the same or a higher level
    (headings inside fenced code, such as TOML comments, are not headings)."""
    plain = FENCE.sub("", text)
    found = list(HEADING.finditer(plain))
    out: dict[str, str] = {}
    for n, match in enumerate(found):
        level = len(match.group(1))
        end = len(plain)
        for later in found[n + 1 :]:
            if len(later.group(1)) <= level:
                end = later.start()
                break
        out[match.group(2)] = plain[match.end() : end]
    return out


def section_for(table: str, text: str) -> str:
    """The section headed by the table as TOML spells it: `[[tap]]`, `[schemas]`,
    `[sources.<name>]`."""
    spellings = (f"[[{table}]]", f"[{table}]", f"[{table}.")
    matches = [
        body
        for title, body in sections(text).items()
        if any(spelling in title for spelling in spellings)
    ]
    assert matches, f"docs/configuration.md has no section headed by the config table {table!r}"
    return matches[0]


@pytest.mark.parametrize("table", TOP_LEVEL_KEYS)
def test_every_config_table_has_a_section(table: str) -> None:
    section_for(table, CONFIGURATION.read_text("utf-8"))


def test_every_config_table_has_its_keys_listed_here() -> None:
    assert set(TABLE_KEYS) == set(TOP_LEVEL_KEYS), "a new config table: add its keys above"


@pytest.mark.parametrize("name", settings_env_vars())
def test_every_settings_variable_is_documented(name: str) -> None:
    spans = code_spans(CONFIGURATION.read_text("utf-8"))
    assert name in spans, f"docs/configuration.md does not name `{name}` (pik/settings.py)"


def test_per_service_endpoint_variables_are_documented() -> None:
    text = CONFIGURATION.read_text("utf-8")
    assert f"`{SERVICE_ENDPOINT_PREFIX}<SERVICE>`" in text


@pytest.mark.parametrize(
    ("table", "key"), [(table, key) for table, keys in TABLE_KEYS.items() for key in keys]
)
def test_every_config_key_is_documented_in_its_table(table: str, key: str) -> None:
    body = section_for(table, CONFIGURATION.read_text("utf-8"))
    assert f"`{key}`" in body, (
        f"docs/configuration.md, section of the config table {table!r}, does not name `{key}`"
    )


def doc_files() -> list[Path]:
    return [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]


def relative_links(path: Path) -> list[str]:
    """Link targets of a Markdown file that are neither URLs nor in-page anchors; links inside
    code are examples, not links."""
    text = INLINE_CODE.sub("", FENCE.sub("", path.read_text("utf-8")))
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
            continue
        targets.append(target)
    return targets


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_existing_files(path: Path) -> None:
    broken = [
        target
        for target in relative_links(path)
        if not (path.parent / target.split("#", 1)[0]).exists()
    ]
    assert not broken, f"{path.relative_to(ROOT)} links to missing files: {broken}"


def test_the_link_finder_finds_links() -> None:
    assert "docs/quickstart.md" in relative_links(ROOT / "README.md")
    assert any(t.startswith("troubleshooting.md") for t in relative_links(CONFIGURATION))
