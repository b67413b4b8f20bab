"""Lambda entry point for the processor on an SQS event source mapping.

Returns ``batchItemFailures`` for the messages it could not handle (the mapping must have
``ReportBatchItemFailures``): those return to the queue and, after its receives, reach the
dead-letter queue. Metrics are printed in CloudWatch embedded metric format.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from typing import Any

from consumers.processor import Processor
from infra.metrics import Metrics
from pik.kit import build_kit
from pik.logs import configure_logging
from pik.settings import Settings


@cache
def _built() -> tuple[Processor, Metrics]:
    settings = Settings()
    configure_logging(settings.log_level)
    kit = build_kit(settings)
    return kit.processor(), kit.metrics


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    processor, metrics = _built()
    records = event.get("Records", [])
    try:
        outcome = processor.process([(r["messageId"], r.get("body", "")) for r in records])
    finally:
        for doc in metrics.drain_emf():
            sys.stdout.write(json.dumps(doc) + "\n")
    return {"batchItemFailures": [{"itemIdentifier": mid} for mid in outcome.failed]}
