"""The life of one service process: start, serve, drain, stop.

Every service is a `ServiceDefinition` (its name, migrations, HTTP routes, bus subscribers and
background work); `run` does the rest the same way for all of them:

1. wait for NATS and the database with bounded retries, saying what it waits for;
2. declare streams, migrate the service's tables;
3. start subscribers, background tasks, the HTTP server and the heartbeat;
4. on SIGTERM/SIGINT: report "draining", let the service finish in-flight work, stop
   subscribers (unacknowledged messages are redelivered elsewhere), close everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import uvicorn
from faststream.nats import NatsBroker
from faststream.nats.security import NatsCredentials, NatsUserPassword
from nats.aio.client import Client
from nats.js import JetStreamContext
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from shared import tracing
from shared.bus.headers import use_fast_headers
from shared.bus.topology import ensure_streams
from shared.config import StaggerSettings
from shared.db.engine import create_engine, session_factory
from shared.db.migrate import MigrationChain, migrate, service_chain
from shared.logs import RoutineFetchTimeouts, configure_logging
from shared.runtime.health import Health, heartbeat_loop, publish_heartbeat
from shared.runtime.memory import limit_malloc_arenas

log = logging.getLogger(__name__)


class StartupTimeout(RuntimeError):
    """NATS or the database did not become reachable in time."""


class StartupCancelled(RuntimeError):
    """SIGTERM/SIGINT arrived while the service was still waiting for NATS or the database."""


@dataclass
class ServiceContext:
    """Everything a running service's code may use; built once by `run`."""

    name: str
    settings: StaggerSettings
    broker: NatsBroker
    health: Health
    stopping: asyncio.Event
    engine: AsyncEngine | None = None
    sessions: async_sessionmaker[AsyncSession] | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    crashed: list[BaseException] = field(default_factory=list)

    @property
    def nc(self) -> Client:
        """The NATS connection (shared with FastStream)."""
        return self.broker.connection

    @property
    def js(self) -> JetStreamContext:
        """JetStream on the same connection."""
        return self.nc.jetstream()

    @property
    def db(self) -> async_sessionmaker[AsyncSession]:
        """The session factory (the service declared migrations, so it has a database)."""
        if self.sessions is None:
            raise RuntimeError(f"service {self.name} has no database")
        return self.sessions

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run background work for the life of the process; if it crashes, the process stops."""
        task = asyncio.create_task(coro, name=name)

        def done(t: asyncio.Task[Any]) -> None:
            if t.cancelled():
                return
            exc = t.exception()
            if exc is not None:
                log.error("background task crashed", exc_info=exc, extra={"task": name})
                self.crashed.append(exc)
                self.stopping.set()

        task.add_done_callback(done)
        self.tasks.append(task)
        return task


class ServiceDefinition(Protocol):
    """What a service provides to the runtime."""

    name: str

    def migrations(self) -> Path | None:
        """Directory of the service's Alembic chain, or None if it keeps no tables."""

    def http_app(self, ctx: ServiceContext) -> ASGIApp | None:
        """The service's own HTTP routes (health routes are added around them)."""

    def register(self, ctx: ServiceContext) -> None:
        """Declare FastStream subscribers on `ctx.broker` (before it starts)."""

    async def start(self, ctx: ServiceContext) -> None:
        """Work after the broker is connected: consumers, projections, timers."""

    async def drain(self, ctx: ServiceContext) -> None:
        """Finish in-flight work after SIGTERM (bounded by the drain timeout)."""


async def _retry(
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


def make_broker(settings: StaggerSettings, service: str) -> NatsBroker:
    """A FastStream NATS broker configured from settings."""
    logger = logging.getLogger(f"faststream.{service}")
    logger.addFilter(RoutineFetchTimeouts())
    kwargs: dict[str, Any] = {
        "servers": settings.nats_servers,
        "name": f"stagger-{service}-{settings.instance_id}",
        "logger": logger,
        "graceful_timeout": settings.drain_timeout_seconds,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 2,
        "allow_reconnect": True,
    }
    if settings.nats_creds:
        kwargs["security"] = NatsCredentials(str(settings.nats_creds))
    elif settings.nats_user:
        kwargs["security"] = NatsUserPassword(
            settings.nats_user,
            settings.nats_password.get_secret_value() if settings.nats_password else "",
        )
    return NatsBroker(**kwargs)


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


def new_context(definition: ServiceDefinition, settings: StaggerSettings) -> ServiceContext:
    """A fresh context for one replica of a service."""
    return ServiceContext(
        name=definition.name,
        settings=settings,
        broker=make_broker(settings, definition.name),
        health=Health(definition.name, settings.instance_id),
        stopping=asyncio.Event(),
    )


@contextlib.asynccontextmanager
async def running(
    definition: ServiceDefinition, settings: StaggerSettings, ctx: ServiceContext | None = None
) -> AsyncIterator[ServiceContext]:
    """Start a service in this event loop, yield its context, then drain and stop it.

    `run` uses it for the process; tests use it to run a service in-process.
    """
    ctx = ctx or new_context(definition, settings)
    try:
        async with contextlib.AsyncExitStack() as stack:
            await _unless_stopped(_start(definition, ctx, stack), ctx.stopping)
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
        await _close(ctx)


async def _unless_stopped(work: Coroutine[Any, Any, None], stopping: asyncio.Event) -> None:
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
    if await _cancel([task]):
        log.error("start-up did not stop after cancel")
    raise StartupCancelled("stopped during start-up")


async def _cancel(tasks: list[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    """Cancel `tasks` and wait for them (bounded); returns those still running."""
    stuck = {task for task in tasks if not task.done()}
    deadline = time.monotonic() + CLOSE_STEP_SECONDS
    while stuck and time.monotonic() < deadline:
        # Cancel again each round: on Python 3.11 `wait_for` can swallow a cancellation that
        # lands as its inner wait completes, and the task then carries on as if never told.
        for task in stuck:
            task.cancel()
        _done, stuck = await asyncio.wait(stuck, timeout=0.5)
    return stuck


# Each closing step gets this long: a step that cannot finish (a task that ignores
# cancellation, a broker waiting on a dead connection) must not keep the process alive.
CLOSE_STEP_SECONDS = 10.0


async def _close(ctx: ServiceContext) -> None:
    """Cancel background work, stop the broker, dispose the database; each step bounded."""
    for task in await _cancel(ctx.tasks):
        log.error("background task did not stop after cancel: %s", task.get_name())
    await _stop_broker(ctx.broker)
    if ctx.engine is not None:
        await _bounded("database dispose", ctx.engine.dispose())


async def _stop_broker(broker: NatsBroker) -> None:
    """Stop the broker (draining its subscriptions), but not a moment longer once NATS is gone.

    A drain flushes and waits for the server's answer; with the server stopped alongside us
    (a supervisor killed outright takes NATS with it) those waits only run out their timeouts.
    """
    connection = broker._connection  # None when start-up never reached NATS
    stop = asyncio.ensure_future(broker.stop())
    deadline = time.monotonic() + CLOSE_STEP_SECONDS
    while not stop.done() and time.monotonic() < deadline:
        await asyncio.wait({stop}, timeout=0.1)
        if connection is not None and not connection.is_connected:
            break
    if not stop.done():
        stop.cancel()
        await asyncio.wait({stop}, timeout=1.0)
        gone = connection is not None and not connection.is_connected
        log.warning("NATS is gone; gave up draining" if gone else "broker stop timed out")
    elif not stop.cancelled() and (exc := stop.exception()) is not None:
        log.warning("broker stop failed; going on", extra={"error": repr(exc)})
    # A drain refused or abandoned leaves the client reconnecting forever in the background.
    if connection is not None and not connection.is_closed:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.close(), 2.0)


async def _bounded(step: str, work: Awaitable[Any]) -> None:
    try:
        await asyncio.wait_for(work, CLOSE_STEP_SECONDS)
    except TimeoutError:
        log.error("%s did not finish in %.0fs; going on", step, CLOSE_STEP_SECONDS)
    except Exception:
        log.exception("%s failed; going on", step)


async def run(definition: ServiceDefinition, settings: StaggerSettings) -> int:
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


async def _start(
    definition: ServiceDefinition, ctx: ServiceContext, stack: contextlib.AsyncExitStack
) -> None:
    settings = ctx.settings
    definition.register(ctx)
    await _retry(
        f"NATS at {', '.join(settings.nats_servers)}",
        ctx.broker.connect,
        settings.startup_timeout_seconds,
        ctx.stopping,
    )
    use_fast_headers(ctx.nc)
    await _retry(
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
        await _retry(
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


def main(definition: ServiceDefinition, settings: StaggerSettings | None = None) -> None:
    """Process entry point: run the service and exit with its code."""
    from shared.config import load_settings

    settings = settings or load_settings()
    # Before the event loop and its worker threads exist, so every thread's arena obeys it.
    limit_malloc_arenas(settings.malloc_arenas)
    sys.exit(asyncio.run(run(definition, settings)))


class BaseService:
    """Defaults for a `ServiceDefinition`: no tables, no routes, nothing to drain."""

    name = "service"

    def migrations(self) -> Path | None:
        """No tables by default."""
        return None

    def http_app(self, ctx: ServiceContext) -> ASGIApp | None:
        """No routes beyond health by default."""
        return None

    def register(self, ctx: ServiceContext) -> None:
        """No subscribers by default."""

    async def start(self, ctx: ServiceContext) -> None:
        """Nothing to start by default."""

    async def drain(self, ctx: ServiceContext) -> None:
        """Nothing in flight by default."""
