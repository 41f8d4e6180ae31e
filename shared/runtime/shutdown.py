"""Stopping a service: cancel its tasks, stop the broker, dispose the database, each bounded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import Any

from faststream.nats import NatsBroker

from shared.runtime.context import ServiceContext

# The service module's logger: records keep the name they had before the split.
log = logging.getLogger("shared.runtime.service")

# Each closing step gets this long: a step that cannot finish (a task that ignores
# cancellation, a broker waiting on a dead connection) must not keep the process alive.
CLOSE_STEP_SECONDS = 10.0


async def cancel(tasks: list[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
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


async def close(ctx: ServiceContext) -> None:
    """Cancel background work, stop the broker, dispose the database; each step bounded."""
    for task in await cancel(ctx.tasks):
        log.error("background task did not stop after cancel: %s", task.get_name())
    await stop_broker(ctx.broker)
    if ctx.engine is not None:
        await bounded("database dispose", ctx.engine.dispose())


async def stop_broker(broker: NatsBroker) -> None:
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


async def bounded(step: str, work: Awaitable[Any]) -> None:
    """Await one closing step for at most CLOSE_STEP_SECONDS, logging instead of raising."""
    try:
        await asyncio.wait_for(work, CLOSE_STEP_SECONDS)
    except TimeoutError:
        log.error("%s did not finish in %.0fs; going on", step, CLOSE_STEP_SECONDS)
    except Exception:
        log.exception("%s failed; going on", step)
