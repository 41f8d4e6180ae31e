"""The audit service's HTTP API: query, export and verify the trail."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.audit.handlers import queries
from services.audit.handlers.queries import EventFilter
from shared.sites import SiteDirectory
from shared.tokens import Principal, TokenRefused, TokenRegistry


@dataclass
class AuditContext:
    """What the routes need."""

    db: async_sessionmaker[AsyncSession]
    tokens: TokenRegistry
    sites: SiteDirectory


def _problem(status: int, detail: str) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


def build_app(ctx: AuditContext) -> FastAPI:
    """The audit API (no `from __future__ import annotations`: FastAPI reads the signatures)."""
    app = FastAPI(
        title="Stagger audit",
        version="0.1.0",
        description="The tamper-evident history of every event.",
    )
    router = APIRouter(prefix="/api/v1/audit")

    async def principal(
        authorization: Annotated[str | None, Header(description="Bearer <token>")] = None,
    ) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise _problem(401, "send 'Authorization: Bearer <token>'")
        try:
            found = await ctx.tokens.check(authorization[7:].strip())
        except TokenRefused as exc:
            raise _problem(401, exc.message) from None
        if found.role == "sender":
            raise _problem(403, "a sender token cannot read the audit trail")
        return found

    Caller = Annotated[Principal, Depends(principal)]

    def scope(who: Principal, site_id: str | None) -> EventFilter:
        if site_id is not None:
            site = ctx.sites.get(site_id)
            if site is None or not who.sees_site(site.group_id, site_id):
                raise _problem(404, f"no site {site_id} you can see")
        sites = None if who.role in ("group_admin", "auditor") else sorted(who.sites)
        return EventFilter(groups=[who.group_id], sites=sites, site_id=site_id)

    @router.get("/events", summary="Records, filtered, in stream order")
    async def events(
        who: Caller,
        site_id: str | None = None,
        type: Annotated[
            str | None, Query(description="Exact type, or a prefix ending in '.'")
        ] = None,
        message_id: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        base = scope(who, site_id)
        flt = EventFilter(
            **{
                **base.__dict__,
                "type": type,
                "message_id": message_id,
                "actor": actor,
                "since": since,
                "until": until,
                "after_position": cursor,
            }
        )
        async with ctx.db() as session:
            items, nxt = await queries.list_events(session, flt, limit)
        return {"events": items, "next_cursor": nxt}

    @router.get(
        "/messages/{message_id}/timeline",
        summary="Why was this message sent when it was (or held until when)?",
    )
    async def message_timeline(message_id: str, who: Caller) -> dict[str, Any]:
        async with ctx.db() as session:
            found = await queries.timeline(session, message_id, scope(who, None))
        if found is None:
            raise _problem(404, f"no message {message_id} you can see")
        return found

    @router.get("/sites/{site_id}/outbox", summary="A site's messages by state")
    async def site_outbox(
        site_id: str,
        who: Caller,
        state: str | None = None,
        channel: Literal["sms", "email"] | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        scope(who, site_id)
        async with ctx.db() as session:
            return await queries.outbox(
                session,
                site_id,
                group_id=who.group_id,
                state=state,
                channel=channel,
                limit=limit,
                offset=offset,
            )

    @router.get("/export", summary="Export records as JSON Lines or CSV")
    async def export(
        who: Caller,
        format: Literal["jsonl", "csv"] = "jsonl",
        site_id: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> StreamingResponse:
        base = scope(who, site_id)
        flt = EventFilter(**{**base.__dict__, "type": type, "since": since, "until": until})

        async def lines() -> AsyncIterator[str]:
            import json

            if format == "csv":
                yield queries.csv_line(None)
            async for item in queries.iter_events(ctx.db, flt):
                yield queries.csv_line(item) if format == "csv" else json.dumps(item) + "\n"

        media = "text/csv" if format == "csv" else "application/x-ndjson"
        return StreamingResponse(
            lines(),
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="stagger-audit.{format}"'},
        )

    @router.get("/verify", summary="Check the caller's group's hash chain")
    async def verify_chain(who: Caller) -> JSONResponse:
        if who.role not in ("auditor", "group_admin"):
            raise _problem(403, "only auditors and group admins verify the trail")
        result = await queries.verify(ctx.db, group_id=who.group_id)
        return JSONResponse(
            {
                "ok": result.ok,
                "records": result.records,
                "chains": result.chains,
                "problems": result.problems,
            },
            status_code=200 if result.ok else 409,
        )

    app.include_router(router)
    return app
