"""Closing a connection without any response: the "timeout after accept" fault.

ASGI has no way to say "drop this connection": an app that returns without responding gets a
500 from the server. So the simulator runs uvicorn with a thin subclass of its h11 protocol
that puts an abort callable into each request's scope; the route calls it after holding the
request. The client then sees the server disconnect without a status line, exactly the
ambiguous outcome a real provider's load balancer produces.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from uvicorn.protocols.http.h11_impl import H11Protocol

ABORT_SCOPE_KEY = "stagger.sms_sim.abort_connection"


class ConnectionDropped(RuntimeError):
    """Raised in-process (no socket to drop), so an ASGI test client still gets no answer."""


class DroppableH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus `scope[ABORT_SCOPE_KEY]()` to close the socket abruptly."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inner = self.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                scope[ABORT_SCOPE_KEY] = self._abort
            await inner(scope, receive, send)

        self.app = app

    def _abort(self) -> None:
        transport = getattr(self, "transport", None)
        if transport is not None:
            transport.abort()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def hold_then_drop(request: Request, seconds: float, stopping: asyncio.Event) -> None:
    """Keep the request open for `seconds` (or until shutdown), then drop the connection."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    abort: Callable[[], None] | None = request.scope.get(ABORT_SCOPE_KEY)
    if abort is None:
        raise ConnectionDropped("simulated timeout after accept: no response is sent")
    abort()
    # Wait for the server to notice, so it writes nothing (not even a 500) afterwards.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_disconnected(request), timeout=5)
