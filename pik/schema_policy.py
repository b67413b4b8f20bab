"""Schema policy from the config file (``PIK_CONFIG``): which sources require a schema, and
which registry folder to use.

```toml
[schemas]
registry = "registry"             # default: none (an empty registry); relative paths
                                  # are relative to the config file's folder

[sources.orders-service]
schema_policy = "require"         # require | allow-unknown (default)
```

With ``require``, an event of that source whose event type has no registered schema is
``REJECTED`` as ``unknown_schema``; with ``allow-unknown`` it is accepted unchecked. Events
whose event type has a registered schema are validated either way. Unknown keys fail loudly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from infra.errors import ConfigError
from schemas.registry import SchemaRegistry
from schemas.validation import PayloadValidator

SOURCES_KEY = "sources"
SCHEMAS_KEY = "schemas"
SOURCE_KEYS = ("schema_policy",)
SCHEMAS_KEYS = ("registry",)


class Policy(StrEnum):
    REQUIRE = "require"
    ALLOW_UNKNOWN = "allow-unknown"


DEFAULT_POLICY = Policy.ALLOW_UNKNOWN


@dataclass(frozen=True, slots=True)
class SchemaPolicy:
    sources: Mapping[str, Policy] = field(default_factory=dict)
    registry: Path | None = None  # None: the kit's own registry folder

    def policy(self, source: str) -> Policy:
        return self.sources.get(source, DEFAULT_POLICY)

    @property
    def required_sources(self) -> frozenset[str]:
        return frozenset(s for s, p in self.sources.items() if p is Policy.REQUIRE)

    def load_registry(self) -> SchemaRegistry:
        return SchemaRegistry.load(self.registry)

    def validator(self, registry: SchemaRegistry | None = None) -> PayloadValidator:
        return PayloadValidator(registry or self.load_registry(), self.required_sources)


def parse_schema_policy(
    doc: Mapping[str, Any], where: str = "config", base: Path | None = None
) -> SchemaPolicy:
    """The ``[sources.*]`` and ``[schemas]`` tables of a parsed config document (other
    top-level tables are someone else's)."""
    sources_doc = doc.get(SOURCES_KEY, {})
    if not isinstance(sources_doc, dict):
        raise ConfigError(f"{where}: `{SOURCES_KEY}` must be a table of [sources.<name>] tables")
    sources: dict[str, Policy] = {}
    for name, table in sources_doc.items():
        here = f"{where}: [sources.{name}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{here} is not a table")
        _no_unknown(table, SOURCE_KEYS, here)
        if "schema_policy" in table:
            sources[name] = _policy(table["schema_policy"], here)
    schemas_doc = doc.get(SCHEMAS_KEY, {})
    if not isinstance(schemas_doc, dict):
        raise ConfigError(f"{where}: `{SCHEMAS_KEY}` must be a table ([schemas])")
    _no_unknown(schemas_doc, SCHEMAS_KEYS, f"{where}: [schemas]")
    registry: Path | None = None
    if "registry" in schemas_doc:
        value = schemas_doc["registry"]
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: [schemas] registry must be a folder path (text)")
        registry = Path(value).expanduser()
        if not registry.is_absolute() and base is not None:
            registry = base / registry
    return SchemaPolicy(sources=sources, registry=registry)


def _policy(value: Any, where: str) -> Policy:
    try:
        return Policy(value)
    except ValueError:
        known = " | ".join(p.value for p in Policy)
        raise ConfigError(f"{where}: schema_policy {value!r} is not one of {known}") from None


def _no_unknown(table: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
