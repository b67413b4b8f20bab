"""Remote registries' subjects for ``pik schemas check``: a Confluent-compatible Schema Registry
(subjects and their versions over its REST API) or an AWS Glue Schema Registry (a schema's
versions by GetSchemaVersion), each subject with its compatibility level as the registry keeps
it, checked by the kit's own rules (``schemas/compatibility.py``), as a folder's are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from infra.aws import AwsClients
from infra.errors import ConfigError
from infra.schema_registry import ConfluentSchemaSource, GlueSchemaSource, confluent_client
from pik.kit import registry_credentials
from pik.settings import Settings
from schemas.compatibility import DEFAULT_MODE, Mode

# Glue's names for the levels (*_ALL: against every earlier version; DISABLED: no checks).
GLUE_MODES = {
    "DISABLED": Mode.NONE,
    "NONE": Mode.NONE,
    "BACKWARD": Mode.BACKWARD,
    "BACKWARD_ALL": Mode.BACKWARD_TRANSITIVE,
    "FORWARD": Mode.FORWARD,
    "FORWARD_ALL": Mode.FORWARD_TRANSITIVE,
    "FULL": Mode.FULL,
    "FULL_ALL": Mode.FULL_TRANSITIVE,
}


@dataclass(frozen=True, slots=True)
class RemoteSubject:
    name: str
    mode: Mode
    versions: list[tuple[str, Any]]  # ("v<N>", schema) oldest first


def _mode(level: str | None, table: dict[str, Mode], where: str) -> Mode:
    if level is None:
        return DEFAULT_MODE
    mode = table.get(level.upper())
    if mode is None:
        raise ConfigError(f"{where}: compatibility {level!r} is not one the kit checks")
    return mode


def _schema(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: not an Avro schema: {exc}") from exc


def confluent_subjects(
    settings: Settings, url: str, only: str | None = None, *, client: Any = None
) -> list[RemoteSubject]:
    """Every subject of the registry at ``url`` (or ``only`` that one)."""
    source = ConfluentSchemaSource(
        client or confluent_client(url, registry_credentials(settings)), url
    )
    names = [only] if only is not None else source.subjects()
    modes = {m.value: m for m in Mode}
    out = []
    for name in names:
        versions = [
            (f"v{version}", _schema(text, f"{url} {name} v{version}"))
            for version, _, text in source.versions(name)
        ]
        mode = _mode(source.compatibility(name), modes, f"{url} {name}")
        out.append(RemoteSubject(name, mode, versions))
    return out


def glue_subjects(
    settings: Settings, registry: str, only: str | None = None, *, glue: Any = None
) -> list[RemoteSubject]:
    """Every schema of the Glue registry (or ``only`` that one) as a subject."""
    source = GlueSchemaSource(glue or AwsClients(settings.aws()).client("glue"))
    names = [only] if only is not None else source.schema_names(registry)
    out = []
    for name in names:
        where = f"Glue {registry}/{name}"
        mode = _mode(source.compatibility(registry, name), GLUE_MODES, where)
        versions = [
            (f"v{number}", _schema(text, f"{where} v{number}"))
            for number, _, text in source.versions(registry, name)
        ]
        out.append(RemoteSubject(name, mode, versions))
    return out
