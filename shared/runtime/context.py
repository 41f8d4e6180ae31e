"""What a service is to the runtime (`ServiceDefinition`, `BaseService`) and what its code may
use while it runs (`ServiceContext`, built by `new_context`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from faststream.nats import NatsBroker
from faststream.nats.security import NatsCredentials, NatsUserPassword
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.types import ASGIApp

from shared.config import StaggerConfig
from shared.logs import RoutineFetchTimeouts
from shared.runtime.health import Health

# The service module's logger: records keep the name they had before the split.
log = logging.getLogger("shared.runtime.service")


@dataclass
class ServiceContext:
    """Everything a running service's code may use; built once by `run`."""

    name: str
    config: StaggerConfig
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


def make_broker(settings: StaggerConfig, service: str) -> NatsBroker:
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


def new_context(definition: ServiceDefinition, settings: StaggerConfig) -> ServiceContext:
    """A fresh context for one replica of a service."""
    return ServiceContext(
        name=definition.name,
        config=settings,
        broker=make_broker(settings, definition.name),
        health=Health(definition.name, settings.instance_id),
        stopping=asyncio.Event(),
    )


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
