"""An ASGI middleware that refuses request bodies over a size cap (413) before anything parses them.

`Content-Length` over the cap is refused at once, without reading the body. A body without it
(chunked) is counted as the app reads it: the chunk that crosses the cap is the last one read,
the app sees an error instead, and whatever it would have answered is replaced by the 413.
The answer carries `Connection: close`, so the unread rest is never read from the socket.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROBLEM = "application/problem+json"


class BodyTooLarge(Exception):
    """Raised to the app when the streamed body crosses the cap."""


def too_large_body(max_bytes: int) -> bytes:
    """The problem+json body of the 413 answer."""
    return json.dumps(
        {
            "type": "about:blank",
            "title": "Request too large",
            "status": 413,
            "detail": f"The request body is larger than {max_bytes} bytes, the most this "
            "server accepts. Send less per request (e.g. split a batch).",
        }
    ).encode()


class BodyLimit:
    """Wraps an ASGI app: HTTP request bodies larger than `max_bytes` get 413 problem+json;
    `on_refused(scope)`, if given, is told of each refusal (e.g. to count it)."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        *,
        on_refused: Callable[[Scope], None] | None = None,
    ) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be 0 or more")
        self.app = app
        self.max_bytes = max_bytes
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, send)
            return
        state = _Counting(self.max_bytes, receive, send)
        try:
            await self.app(scope, state.receive, state.send)
        except BodyTooLarge:
            pass
        except Exception:
            if not state.exceeded:
                raise
        if state.exceeded and not state.started:
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        if self.on_refused is not None:
            self.on_refused(scope)
        body = too_large_body(self.max_bytes)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _Counting:
    """One request's receive/send pair that counts body bytes and holds back a late answer."""

    def __init__(self, max_bytes: int, receive: Receive, send: Send) -> None:
        self.max_bytes = max_bytes
        self._receive = receive
        self._send = send
        self.seen = 0
        self.exceeded = False
        self.started = False

    async def receive(self) -> Message:
        if self.exceeded:
            raise BodyTooLarge(f"request body over {self.max_bytes} bytes")
        message = await self._receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.max_bytes:
                self.exceeded = True
                raise BodyTooLarge(f"request body over {self.max_bytes} bytes")
        return message

    async def send(self, message: Message) -> None:
        # Once the body went over the cap, the app's own answer (often a 400 or 422 about an
        # unreadable body) is dropped: the 413 is sent instead.
        if self.exceeded and not self.started:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def _content_length(scope: Scope) -> int | None:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
