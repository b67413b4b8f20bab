"""Wiring of the opt-in processor: aggregate definitions from the config, adapters from the kit."""

from __future__ import annotations

from typing import Any

from consumers.processor import DEFAULT_DEFINITIONS, AggregateDefinition, Processor
from infra.aggregates import DynamoAggregates
from infra.errors import ConfigError
from infra.queue import SqsWorkQueue, queue_url
from infra.resources import REPLAY_VISIBILITY_TIMEOUT_S
from pik.config import load_config
from pik.kit import Kit

AGGREGATE_KEYS = frozenset({"name", "kind", "field", "source", "event_type"})


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


def aggregates(kit: Kit) -> DynamoAggregates:
    return DynamoAggregates(kit.clients.dynamodb(), kit.names.aggregates_table, kit.archive)


def build_processor(kit: Kit) -> Processor:
    config = load_config(kit.settings.config)
    return Processor(
        kit.index,
        kit.archive,
        aggregates(kit),
        kit.clock,
        kit.metrics,
        definitions=definitions_from(config.aggregates),
        dry_run=kit.settings.dry_run,
    )


def replay_queue(
    kit: Kit, url: str | None = None, *, visibility_timeout_s: int = REPLAY_VISIBILITY_TIMEOUT_S
) -> SqsWorkQueue:
    """The replay queue (or ``url``), received with ``visibility_timeout_s``: how long a batch a
    processor took stays hidden from the others, and how late it comes back if that one dies."""
    sqs = kit.clients.sqs()
    if url is None:
        url = queue_url(sqs, kit.names.replay_queue)
    return SqsWorkQueue(sqs, url, visibility_timeout_s)
