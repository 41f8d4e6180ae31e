"""Starting a service: wait for NATS and the database (bounded), declare streams, migrate,
start subscribers, the HTTP server and the heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from sqlalchemy import text
from starlette.applications import Starlette

from shared.bus.headers import use_fast_headers
from shared.bus.topology import ensure_streams
from shared.db.engine import create_engine, session_factory
from shared.db.migrate import MigrationChain, migrate, service_chain
from shared.runtime.context import ServiceContext, ServiceDefinition
from shared.runtime.health import heartbeat_loop
from shared.runtime.http import health_routes, serve_http
from shared.runtime.shutdown import cancel

# The service module's logger: records keep the name they had before the split.
log = logging.getLogger("shared.runtime.service")


class StartupTimeout(RuntimeError):
    """NATS or the database did not become reachable in time."""


class StartupCancelled(RuntimeError):
    """SIGTERM/SIGINT arrived while the service was still waiting for NATS or the database."""


async def retry(
    what: str,
    attempt: Callable[[], Awaitable[Any]],
    patience: float,
    stopping: asyncio.Event | None = None,
) -> Any:
    """Run `attempt` until it succeeds, logging "waiting for <what>" while it does not.

    An attempt may fail (retried with backoff) or simply not return: nats-py keeps trying the
    first connection on its own when reconnects are unbounded. Either way the wait is logged
    every couple of seconds and bounded by `patience`, then StartupTimeout names what is
    missing. Setting `stopping` ends the wait at once with StartupCancelled: a supervisor that
    dies during start-up takes NATS with it, and its children must not outlive it by minutes.
    """
    stop = stopping or asyncio.Event()
    stop_wait = asyncio.ensure_future(stop.wait())
    deadline = time.monotonic() + patience
    delay = 0.2
    tries = 0
    try:
        while True:
            tries += 1
            task = asyncio.ensure_future(attempt())
            try:
                while True:
                    left = deadline - time.monotonic()
                    done, _ = await asyncio.wait(
                        {task, stop_wait},
                        timeout=max(0.0, min(2.0, left)),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if task in done:
                        return task.result()
                    if stop_wait in done:
                        raise StartupCancelled(f"stopped while waiting for {what}")
                    if time.monotonic() >= deadline:
                        raise StartupTimeout(
                            f"gave up waiting for {what} after {patience:g} s: no answer"
                        )
                    log.warning(
                        f"waiting for {what}", extra={"attempt": tries, "error": "no answer"}
                    )
            except (StartupTimeout, StartupCancelled, asyncio.CancelledError):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                raise
            except Exception as exc:
                if time.monotonic() + delay > deadline:
                    raise StartupTimeout(
                        f"gave up waiting for {what} after {tries} attempts: {exc}"
                    ) from exc
                log.warning(
                    f"waiting for {what}",
                    extra={"attempt": tries, "error": f"{type(exc).__name__}: {exc}"},
                )
                await asyncio.wait({stop_wait}, timeout=delay)
                if stop.is_set():
                    raise StartupCancelled(f"stopped while waiting for {what}") from exc
                delay = min(delay * 2, 3.0)
    finally:
        stop_wait.cancel()


async def unless_stopped(work: Coroutine[Any, Any, None], stopping: asyncio.Event) -> None:
    """Run start-up, abandoning it with StartupCancelled as soon as `stopping` is set.

    Start-up has waits of its own (a consumer bind, the first settings snapshot) that must
    not keep a SIGTERMed process alive for their full patience when NATS is gone too.
    """
    task = asyncio.ensure_future(work)
    stop_wait = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_wait.cancel()
    if not task.done():
        # Start-up's own waits end themselves on `stopping`, naming what they waited for.
        await asyncio.wait({task}, timeout=0.5)
    if task.done():
        task.result()
        return
    if await cancel([task]):
        log.error("start-up did not stop after cancel")
    raise StartupCancelled("stopped during start-up")


async def start_service(
    definition: ServiceDefinition, ctx: ServiceContext, stack: contextlib.AsyncExitStack
) -> None:
    """Bring one replica up to ready; what must be undone on the way out goes on `stack`."""
    settings = ctx.config
    definition.register(ctx)
    await retry(
        f"NATS at {', '.join(settings.nats_servers)}",
        ctx.broker.connect,
        settings.startup_timeout_seconds,
        ctx.stopping,
    )
    use_fast_headers(ctx.nc)
    await retry(
        "JetStream",
        lambda: ensure_streams(ctx.js, settings.stream_replicas),
        settings.startup_timeout_seconds,
        ctx.stopping,
    )
    ctx.health.add_check("nats", _nats_check(ctx))

    migrations = definition.migrations()
    if migrations is not None:
        url = settings.service_database_url(definition.name)
        ctx.engine = create_engine(
            url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
        )
        ctx.sessions = session_factory(ctx.engine)
        chains: list[MigrationChain] = [service_chain(definition.name, migrations)]
        engine = ctx.engine
        await retry(
            "the database",
            lambda: migrate(engine, chains),
            settings.startup_timeout_seconds,
            ctx.stopping,
        )
        ctx.health.add_check("database", _db_check(ctx))

    await definition.start(ctx)
    await ctx.broker.start()

    own_app = definition.http_app(ctx)
    app = Starlette(routes=health_routes(ctx))
    if own_app is not None:
        # Everything else goes to the service's app. Not `Mount("/")`: its pattern (`.*`) does
        # not match a path holding an encoded newline, which then got a bare text 404 here.
        app.router.default = own_app
    port = settings.service_http_port(definition.name)
    await stack.enter_async_context(
        serve_http(app, settings.http_host, port, settings.trusted_proxy_networks)
    )
    ctx.health.details["http"] = f"http://{settings.http_host}:{port}"
    ctx.spawn(heartbeat_loop(ctx.nc, ctx.health, settings.heartbeat_seconds), "heartbeat")


def _nats_check(ctx: ServiceContext) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(ctx.nc.is_connected)

    return check


def _db_check(ctx: ServiceContext) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        assert ctx.engine is not None
        async with ctx.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    return check
