"""`create_app(simulator)`: the simulator as a FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from services.sms_provider_sim.dialects import ALL as DIALECTS
from services.sms_provider_sim.domain.errors import ApiError, invalid
from services.sms_provider_sim.entrypoints.routes import admin, health, provider
from services.sms_provider_sim.handlers.simulator import Simulator

_HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed"}


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body, status_code=exc.status_code, headers=exc.headers)


async def _request_validation_error(_: Request, exc: Exception) -> JSONResponse:
    # Path and query parameters FastAPI validated itself: same shape as body errors.
    assert isinstance(exc, RequestValidationError)
    error = exc.errors()[0]
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    api = invalid(".".join(loc) or None, str(error.get("msg", "invalid")))
    return JSONResponse(api.body, status_code=400)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_ERROR_CODES.get(exc.status_code, "http_error")
    return JSONResponse({"error": code}, status_code=exc.status_code, headers=exc.headers)


def create_app(sim: Simulator) -> FastAPI:
    """The simulator's app; state loads on lifespan start-up and is saved on shutdown."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await sim.start()
        try:
            yield
        finally:
            await sim.stop()

    app = FastAPI(
        title="Stagger SMS provider simulator",
        summary="A local SMS provider for development and tests (see "
        "docs/sms-provider-simulator.md). The admin API has no authentication.",
        version="1",
        lifespan=lifespan,
    )
    app.state.simulator = sim
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.include_router(provider)
    app.include_router(admin)
    app.include_router(health)
    for dialect in DIALECTS:
        app.include_router(dialect.router)
    return app
