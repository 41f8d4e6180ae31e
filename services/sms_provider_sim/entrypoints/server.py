"""Serve the simulator with uvicorn; SIGTERM/SIGINT stop it gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from services.sms_provider_sim.config import SimulatorConfig
from services.sms_provider_sim.dialects.dropping import DroppableH11Protocol
from services.sms_provider_sim.handlers.simulator import Simulator

# Backstop only: held requests are released on shutdown, so draining is normally instant.
GRACEFUL_SHUTDOWN_SECONDS = 10


class _Server(uvicorn.Server):
    # Our own handlers (below) must also release held requests, so uvicorn installs none.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: SimulatorConfig, app: FastAPI) -> bool:
    """Run `app` until SIGTERM/SIGINT; False if the server failed to start."""
    sim: Simulator = app.state.simulator
    server = _Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            http=DroppableH11Protocol,
            ws="none",
            lifespan="on",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
    )

    def stop() -> None:
        sim.begin_shutdown()
        server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        await server.serve()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return server.started
