"""The email gateway's HTTP entrypoint: `GET /attachments/{attachment_id}` serves a *released*
attachment to a caller whose API token may see the site."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from services.email_gateway.handlers.attachments import Download
from shared.tokens import Principal

Authenticate = Callable[[str], Awaitable[Principal | None]]
Lookup = Callable[[Principal, str], Awaitable[Download]]


def attachments_app(authenticate: Callable[[], Authenticate | None], lookup: Lookup) -> ASGIApp:
    """The app; `authenticate()` is None until the token registry is followed (503)."""

    async def attachment(request: Request) -> Response:
        check = authenticate()
        if check is None:
            return JSONResponse({"detail": "starting"}, status_code=503)
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return JSONResponse({"detail": "send 'Authorization: Bearer <token>'"}, 401)
        who = await check(header[7:].strip())
        if who is None:
            return JSONResponse({"detail": "unknown or revoked token"}, status_code=401)
        found = await lookup(who, request.path_params["attachment_id"])
        if found.status != 200:
            return JSONResponse({"detail": found.detail}, status_code=found.status)
        name = found.filename.replace('"', "'").replace("\r", " ")
        name = name.replace("\n", " ").encode("ascii", "replace").decode()
        return Response(
            found.data,
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
                "X-Stagger-Sniffed-Type": found.sniffed_type,
            },
        )

    return Starlette(routes=[Route("/attachments/{attachment_id}", attachment)])
