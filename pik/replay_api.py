"""HTTP routes for replay: ``POST /replay``, ``GET /replays/{id}``."""

from __future__ import annotations

from fastapi import APIRouter

from pik.kit import Kit


def replay_router(kit: Kit) -> APIRouter:
    return APIRouter()
