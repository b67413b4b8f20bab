"""The config file (``PIK_CONFIG``, TOML), read once by ``build_kit``: tap bindings, aggregate
definitions, per-source schema policy and the schema registry.

Top-level tables the kit knows: ``[[tap]]`` (contract, ARCHITECTURE.md), ``[[aggregate]]`` (the
processor's definitions), ``[sources.<name>]`` and ``[schemas]`` (``pik.schema_policy``). Any
other top-level key, and any unknown key inside one of those tables, fails loudly (a
``ConfigError``: exit 2 from every command) with the list of what was not recognised.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumers.processor import DEFAULT_DEFINITIONS, AggregateDefinition
from consumers.tap.binding import Format, TapBinding, binding_from_table, stream_name
from infra.errors import ConfigError
from pik.schema_policy import SchemaPolicy, parse_schema_policy

TOP_LEVEL_KEYS = ("tap", "aggregate", "sources", "schemas")
AGGREGATE_KEYS = frozenset({"name", "kind", "field", "source", "event_type"})


@dataclass(frozen=True, slots=True)
class KitConfig:
    taps: tuple[TapBinding, ...] = ()
    aggregates: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    schemas: SchemaPolicy = field(default_factory=SchemaPolicy)
    path: Path | None = None
    definitions: tuple[AggregateDefinition, ...] = DEFAULT_DEFINITIONS

    def binding_for(self, stream: str) -> TapBinding | None:
        """The binding of a stream, matched by name or ARN."""
        wanted = stream_name(stream)
        for binding in self.taps:
            if binding.stream_name == wanted:
                return binding
        return None


def definitions_from(tables: tuple[dict[str, Any], ...]) -> tuple[AggregateDefinition, ...]:
    """``[[aggregate]]`` tables → definitions (the default daily count when there are none)."""
    if not tables:
        return DEFAULT_DEFINITIONS
    out = []
    for n, table in enumerate(tables, start=1):
        unknown = sorted(set(table) - AGGREGATE_KEYS)
        if unknown:
            raise ConfigError(
                f"[[aggregate]] #{n}: unknown keys {', '.join(unknown)} "
                f"(known: {', '.join(sorted(AGGREGATE_KEYS))})"
            )
        if "name" not in table:
            raise ConfigError(f"[[aggregate]] #{n}: needs a name")
        try:
            out.append(AggregateDefinition(**table))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"[[aggregate]] #{n}: {exc}") from exc
    names = [d.name for d in out]
    if len(set(names)) != len(names):
        raise ConfigError("[[aggregate]] names must be unique")
    return tuple(out)


def parse_config(doc: dict[str, Any], where: str = "config", base: Path | None = None) -> KitConfig:
    """A parsed config document → ``KitConfig`` (``base``: the folder relative paths start in)."""
    unknown = sorted(set(doc) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown top-level key(s) {', '.join(unknown)}; "
            f"known: {', '.join(TOP_LEVEL_KEYS)}"
        )
    taps_doc = doc.get("tap", [])
    if not isinstance(taps_doc, list):
        raise ConfigError(f"{where}: `tap` must be an array of tables ([[tap]])")
    taps: list[TapBinding] = []
    seen: dict[str, int] = {}
    for n, table in enumerate(taps_doc, start=1):
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [[tap]] #{n} is not a table")
        binding = binding_from_table(table, f"{where}: [[tap]] #{n}")
        if binding.stream_name in seen:
            raise ConfigError(
                f"{where}: stream {binding.stream_name!r} is bound twice "
                f"([[tap]] #{seen[binding.stream_name]} and #{n})"
            )
        seen[binding.stream_name] = n
        taps.append(binding)
    aggregates = doc.get("aggregate", [])
    if not isinstance(aggregates, list) or not all(isinstance(a, dict) for a in aggregates):
        raise ConfigError(f"{where}: `aggregate` must be an array of tables ([[aggregate]])")
    try:
        definitions = definitions_from(tuple(aggregates))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return KitConfig(
        taps=tuple(taps),
        aggregates=tuple(aggregates),
        schemas=parse_schema_policy(doc, where, base=base),
        definitions=definitions,
    )


def load_config(path: Path | None) -> KitConfig:
    """The config file at ``path`` (None: no file, the defaults)."""
    if path is None:
        return KitConfig()
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    config = parse_config(doc, str(path), base=path.parent)
    return KitConfig(
        taps=config.taps,
        aggregates=config.aggregates,
        schemas=config.schemas,
        path=path,
        definitions=config.definitions,
    )


def uses_glue_registry(path: Path) -> bool:
    """Whether the config file binds a stream as ``avro-glue`` (the deployed tap then needs
    ``glue:GetSchemaVersion``)."""
    return any(b.format is Format.AVRO_GLUE for b in load_config(path).taps)
