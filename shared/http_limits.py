"""Request body caps for HTTP entrypoints: refuse an oversized body before parsing it.

`read_body_capped(request, limit)` is for an endpoint that reads its own body: a declared
`Content-Length` over the cap is refused before a byte of the body is read, and a body without
one (chunked) is read with a counter and cut off at the cap. Either way `BodyTooLarge` is
raised and the rest of the body is never read; `too_large()` is the 413 to answer with.

`BodyTooLarge` can also be registered as an exception handler (`exception_handlers()`) so that
an app whose framework reads the body itself answers 413 instead of 500.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

KIB = 1024


class BodyTooLarge(Exception):
    """The request body exceeds the cap (a 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over {limit} bytes")
        self.limit = limit


def declared_length(request: Request) -> int | None:
    """The `Content-Length` the client declared, or None (absent or not a number)."""
    value = request.headers.get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


async def read_body_capped(request: Request, limit: int) -> bytes:
    """The whole body, or BodyTooLarge once it is known to exceed `limit` bytes."""
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            # Stop reading here: the server closes the connection after the 413, so the
            # client's remaining bytes are never taken in.
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(limit: int) -> Response:
    """The 413 answer."""
    return JSONResponse(
        {"error": "request body too large", "limit_bytes": limit},
        status_code=413,
        headers={"Connection": "close"},
    )


def exception_handlers() -> Mapping[Any, Callable[[Request, Exception], Any]]:
    """Starlette/FastAPI `exception_handlers` answering BodyTooLarge with 413."""

    async def handle(request: Request, exc: Exception) -> Response:
        limit = exc.limit if isinstance(exc, BodyTooLarge) else 0
        return too_large(limit)

    return {BodyTooLarge: handle}
