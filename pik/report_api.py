"""HTTP routes for investigation reports."""

from __future__ import annotations

from fastapi import APIRouter

from pik.kit import Kit


def report_router(kit: Kit) -> APIRouter:
    return APIRouter()
