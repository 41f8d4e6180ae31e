"""The life of one service process: start, serve, drain, stop.

Every service is a `ServiceDefinition` (its name, migrations, HTTP routes, bus subscribers and
background work); `run` does the rest the same way for all of them:

1. wait for NATS and the database with bounded retries, saying what it waits for;
2. declare streams, migrate the service's tables;
3. start subscribers, background tasks, the HTTP server and the heartbeat;
4. on SIGTERM/SIGINT: report "draining", let the service finish in-flight work, stop
   subscribers (unacknowledged messages are redelivered elsewhere), close everything.

The parts live in their own modules: `context` (ServiceContext, ServiceDefinition, BaseService),
`startup`, `http` (health routes, serve_http) and `shutdown`; this module runs them in order and
re-exports the names services import.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator

from shared import tracing
from shared.config import StaggerConfig
from shared.logs import configure_logging
from shared.runtime.context import (
    BaseService,
    ServiceContext,
    ServiceDefinition,
    make_broker,
    new_context,
)
from shared.runtime.health import publish_heartbeat
from shared.runtime.http import health_routes, serve_http
from shared.runtime.memory import limit_malloc_arenas
from shared.runtime.shutdown import CLOSE_STEP_SECONDS, close
from shared.runtime.startup import StartupCancelled, StartupTimeout, start_service, unless_stopped

__all__ = [
    "CLOSE_STEP_SECONDS",
    "BaseService",
    "ServiceContext",
    "ServiceDefinition",
    "StartupCancelled",
    "StartupTimeout",
    "health_routes",
    "main",
    "make_broker",
    "new_context",
    "run",
    "running",
    "serve_http",
]

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def running(
    definition: ServiceDefinition, settings: StaggerConfig, ctx: ServiceContext | None = None
) -> AsyncIterator[ServiceContext]:
    """Start a service in this event loop, yield its context, then drain and stop it.

    `run` uses it for the process; tests use it to run a service in-process.
    """
    ctx = ctx or new_context(definition, settings)
    try:
        async with contextlib.AsyncExitStack() as stack:
            await unless_stopped(start_service(definition, ctx, stack), ctx.stopping)
            ctx.health.status = "ready"
            await ctx.health.evaluate()
            log.info("ready")
            try:
                yield ctx
            finally:
                log.info("draining")
                ctx.health.status = "draining"
                with contextlib.suppress(Exception):
                    await publish_heartbeat(ctx.nc, ctx.health)
                try:
                    await asyncio.wait_for(definition.drain(ctx), settings.drain_timeout_seconds)
                except TimeoutError:
                    log.warning("drain timed out; unacknowledged work will be redelivered")
    finally:
        ctx.health.status = "stopped"
        await close(ctx)


async def run(definition: ServiceDefinition, settings: StaggerConfig) -> int:
    """Run a service until SIGTERM/SIGINT; returns the process exit code."""
    configure_logging(definition.name, settings.log_level, settings.log_format)
    tracing.configure(definition.name, instance=settings.instance_id)
    ctx = new_context(definition, settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, ctx.stopping.set)
    log.info("starting", extra={"instance": settings.instance_id, "nats": settings.nats_servers})
    try:
        async with running(definition, settings, ctx):
            await ctx.stopping.wait()
    except StartupTimeout as exc:
        log.error(str(exc))
        return 2
    except StartupCancelled as exc:
        log.info(str(exc))
        return 0
    if ctx.crashed:
        return 1
    log.info("stopped")
    return 0


def main(definition: ServiceDefinition, settings: StaggerConfig | None = None) -> None:
    """Process entry point: run the service and exit with its code."""
    from shared.config import load_config

    settings = settings or load_config()
    # Before the event loop and its worker threads exist, so every thread's arena obeys it.
    limit_malloc_arenas(settings.malloc_arenas)
    sys.exit(asyncio.run(run(definition, settings)))
