"""System-wide health: `/healthz` answers for every service, from their heartbeats."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from shared.runtime.health import HealthBoard


def system_router(board: HealthBoard) -> APIRouter:
    """Routes reporting the health of the whole system."""
    router = APIRouter(tags=["system"])

    @router.get(
        "/healthz",
        summary="Status of every Stagger service",
        responses={503: {"description": "At least one service is not ready"}},
    )
    async def healthz() -> JSONResponse:
        all_ready, services = board.report()
        return JSONResponse(
            {"status": "ready" if all_ready else "degraded", "services": services},
            status_code=200 if all_ready else 503,
        )

    return router
