"""The config file (``PIK_CONFIG``, TOML): tap bindings and, later, aggregate definitions.

Top-level tables the kit knows: ``[[tap]]`` (contract, ARCHITECTURE.md) and ``[[aggregate]]``
(read by the processor; passed through here untouched). Any other top-level key, and any unknown
key inside a ``[[tap]]`` table, fails loudly with the list of what was not recognised.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumers.tap.binding import Format, TapBinding, binding_from_table, stream_name
from infra.errors import ConfigError

TOP_LEVEL_KEYS = ("tap", "aggregate", "sources", "schemas")


@dataclass(frozen=True, slots=True)
class KitConfig:
    taps: tuple[TapBinding, ...] = ()
    aggregates: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    path: Path | None = None

    def binding_for(self, stream: str) -> TapBinding | None:
        """The binding of a stream, matched by name or ARN."""
        wanted = stream_name(stream)
        for binding in self.taps:
            if binding.stream_name == wanted:
                return binding
        return None


def parse_config(doc: dict[str, Any], where: str = "config") -> KitConfig:
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
    return KitConfig(taps=tuple(taps), aggregates=tuple(aggregates))


def load_config(path: Path | None) -> KitConfig:
    """The config file at ``path`` (None: no file, no bindings)."""
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
    config = parse_config(doc, str(path))
    return KitConfig(taps=config.taps, aggregates=config.aggregates, path=path)


def uses_glue_registry(path: Path) -> bool:
    """Whether the config file binds a stream as ``avro-glue`` (the deployed tap then needs
    ``glue:GetSchemaVersion``)."""
    return any(b.format is Format.AVRO_GLUE for b in load_config(path).taps)
