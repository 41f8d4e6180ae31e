"""A service's HTTP side: the health and metrics routes, and serving an ASGI app in-loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from shared.runtime.context import ServiceContext


def health_routes(ctx: ServiceContext) -> list[Route]:
    """`/livez`, `/readyz` and `/metrics` for one replica."""

    async def livez(_: Request) -> Response:
        return JSONResponse({"service": ctx.name, "status": ctx.health.status})

    async def readyz(_: Request) -> Response:
        await ctx.health.evaluate()
        snapshot = ctx.health.snapshot()
        return JSONResponse(snapshot, status_code=200 if ctx.health.ready else 503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/livez", livez),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ]


class _QuietServer(uvicorn.Server):
    # The service runtime owns signal handling; uvicorn must not install its own.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_http(
    app: ASGIApp, host: str, port: int, trusted_proxies: Sequence[str] = ()
) -> AsyncIterator[None]:
    """Serve an ASGI app in this event loop for the duration of the block.

    X-Forwarded-For/-Proto are applied (uvicorn's proxy headers) only when the TCP peer is one
    of `trusted_proxies`; with none, uvicorn's own default (trust 127.0.0.1) is switched off
    too, so a local process cannot pose as an https client or another address.
    """
    server = _QuietServer(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            lifespan="on",
            access_log=False,
            proxy_headers=bool(trusted_proxies),
            forwarded_allow_ips=list(trusted_proxies),
        )
    )
    task = asyncio.create_task(server.serve(), name=f"http:{port}")
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"HTTP server on {host}:{port} stopped during start-up")
        await asyncio.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
