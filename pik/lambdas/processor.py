"""Lambda entry point for the processor on an SQS event source mapping.

Returns ``batchItemFailures`` for the messages it could not handle (the mapping must have
``ReportBatchItemFailures``): those return to the queue and, after its receives, reach the
dead-letter queue. Metrics are printed in CloudWatch embedded metric format.

Under ``DRY_RUN=true`` the handler handles nothing and deletes nothing: the mapping has already
received the messages, so it answers every one as a batch item failure and they come back after
their visibility timeout. Each such receive still counts toward the queue's
``maxReceiveCount``: to pause a deployed processor, disable its event source mapping instead.
"""

from __future__ import annotations

import json
import logging
import sys
from functools import cache
from typing import Any

from consumers.processor import Processor
from infra.metrics import Metrics
from pik.kit import build_kit
from pik.logs import configure_logging
from pik.settings import Settings

log = logging.getLogger(__name__)


@cache
def _built() -> tuple[Processor, Metrics, bool]:
    settings = Settings()
    configure_logging(settings.log_level)
    kit = build_kit(settings)
    return kit.processor(), kit.metrics, kit.dry_run


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    processor, metrics, dry_run = _built()
    records = event.get("Records", [])
    if dry_run:  # consume nothing: every message goes back to the queue untouched
        log.warning("DRY_RUN: %d messages handed back unhandled", len(records))
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records]}
    try:
        outcome = processor.process([(r["messageId"], r.get("body", "")) for r in records])
    finally:
        for doc in metrics.drain_emf():
            sys.stdout.write(json.dumps(doc) + "\n")
    return {"batchItemFailures": [{"itemIdentifier": mid} for mid in outcome.failed]}
