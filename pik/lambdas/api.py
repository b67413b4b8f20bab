"""Lambda entry point for API Gateway: the same FastAPI app as ``pik serve``, through Mangum.

The kit is built on the first invocation (settings from the function's environment) and reused
while the execution environment lives.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from typing import Any

from mangum import Mangum

from infra.metrics import Metrics
from pik.http import create_app
from pik.kit import build_kit
from pik.logs import configure_logging
from pik.settings import Settings


@cache
def _built() -> tuple[Mangum, Metrics]:
    settings = Settings()
    configure_logging(settings.log_level)
    kit = build_kit(settings)
    return Mangum(create_app(kit), lifespan="off"), kit.metrics


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway (REST or HTTP API) proxy event → HTTP response; the invocation's metrics are
    printed in CloudWatch embedded metric format."""
    adapter, metrics = _built()
    try:
        response: dict[str, Any] = adapter(event, context)
    finally:
        for doc in metrics.drain_emf():
            sys.stdout.write(json.dumps(doc) + "\n")
    return response
