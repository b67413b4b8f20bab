"""Lambda entry point for API Gateway: the same FastAPI app as ``pik serve``, through Mangum.

The kit is built on the first invocation (settings from the function's environment) and reused
while the execution environment lives.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from mangum import Mangum

from pik.http import create_app
from pik.kit import build_kit
from pik.logs import configure_logging
from pik.settings import Settings


@cache
def _adapter() -> Mangum:
    settings = Settings()
    configure_logging(settings.log_level)
    return Mangum(create_app(build_kit(settings)), lifespan="off")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway (REST or HTTP API) proxy event → HTTP response."""
    response: dict[str, Any] = _adapter()(event, context)
    return response
