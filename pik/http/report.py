"""HTTP routes for investigation reports: ``GET /report`` answers the HTML report
(query parameters as ``pik report``'s flags: ``source`` (repeatable), ``event_type``,
``since``, ``until``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from pik.investigate import SourceRequired, WindowError
from pik.investigate.report_html import render_report
from pik.kit import Kit

__all__ = ["report_router"]


def report_router(kit: Kit) -> APIRouter:
    router = APIRouter()
    investigator = kit.investigator()

    def build(
        sources: list[str], event_type: str | None, since: str | None, until: str | None
    ) -> str:
        window = investigator.window(since, until)
        return render_report(investigator.report(window, sources=sources, event_type=event_type))

    @router.get(
        "/report",
        summary="The HTML investigation report (events per hour and gaps, lag, rejections, "
        "duplicate storms)",
        response_class=HTMLResponse,
        responses={400: {"description": "no source given, or a time that cannot be read"}},
    )
    async def get_report(
        source: Annotated[list[str] | None, Query(description="Source (repeatable).")] = None,
        event_type: Annotated[str | None, Query()] = None,
        since: Annotated[str | None, Query(description="Start (default: 7 days ago).")] = None,
        until: Annotated[str | None, Query(description="End, excluded (default: now).")] = None,
    ) -> Response:
        try:
            html = await run_in_threadpool(build, source or [], event_type, since, until)
        except (WindowError, SourceRequired) as exc:
            return JSONResponse(
                {"status": "ERROR", "reason": "bad_request", "detail": str(exc)}, 400
            )
        return HTMLResponse(html)

    return router
