"""Reply and inbound-email routes of the JSON API: list replies (by site, keyword, status),
unread counts, mark a reply handled, answer it with a one-off SMS, release a quarantined
attachment.

Tenancy as elsewhere in `/api/v1`: a site the token cannot see answers 404; handling and
answering need a role that manages the site; releasing an attachment needs a group admin.
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.config.adapters import read_model
from services.config.adapters import replies as replies_model
from services.config.domain.aggregates import SiteState
from services.config.entrypoints.access import SiteAccess
from services.config.entrypoints.api import ERRORS, WRITE_ERRORS
from services.config.entrypoints.problems import AuthError
from services.config.handlers import ConfigHandlers
from services.config.handlers.replies import MAX_ANSWER, ReplyDesk, ReplyNotFound, search
from shared.dispatch.checks import fits
from shared.domain.site_settings import SettingsError
from shared.tokens import Principal, TokenRegistry

Status = Literal["unread", "handled", "automatic", "all"]


class HandledIn(BaseModel):
    """Marking a reply handled."""

    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=500)


class AnswerIn(BaseModel):
    """The SMS to send back to the patient."""

    model_config = ConfigDict(extra="forbid")
    body: str = Field(min_length=1, max_length=MAX_ANSWER)


class ReleaseIn(BaseModel):
    """Why an attachment is released (kept in the audit trail)."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=500)


def replies_router(handlers: ConfigHandlers, tokens: TokenRegistry, desk: ReplyDesk) -> APIRouter:
    """`/api/v1/replies…`, `/api/v1/sites/{site_id}/replies…` and attachment release."""
    router = APIRouter(prefix="/api/v1")

    access = SiteAccess(tokens, handlers)
    Caller = Annotated[Principal, Depends(access.principal)]

    async def managed(site_id: str, who: Principal) -> SiteState:
        return await access.managed(site_id, who, cannot=f"act on replies of {site_id}")

    async def visible_site_ids(who: Principal, site: str | None) -> list[str]:
        if site:
            return [(await access.site_for(site, who)).site_id]
        async with handlers.db() as session:
            rows = await read_model.list_sites(session, who.group_id)
        return [r["site_id"] for r in rows if who.sees_site(who.group_id, r["site_id"])]

    def reply_id_of(reply_id: str) -> str:
        if not fits(reply_id, 64):
            raise SettingsError({"reply_id": "not a reply id (1-64 printable characters)"})
        return reply_id

    @router.get("/replies", summary="Replies of every site you may see", responses=ERRORS)
    async def list_replies(
        who: Caller,
        site: Annotated[str | None, Query(description="Only this site")] = None,
        keyword: Annotated[str | None, Query(max_length=100, description="In the text")] = None,
        status: Status | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> list[dict[str, Any]]:
        ids = await visible_site_ids(who, site)
        return await search(
            handlers.db,
            handlers.personal,
            who.group_id,
            ids,
            keyword=keyword,
            status=None if status == "all" else status,
            limit=limit,
        )

    @router.get("/replies/unread", summary="Unread replies per site", responses=ERRORS)
    async def unread(who: Caller) -> dict[str, Any]:
        ids = await visible_site_ids(who, None)
        async with handlers.db() as session:
            counts = await replies_model.unread_counts(session, ids)
        return {"unread": sum(counts.values()), "sites": counts}

    @router.post(
        "/sites/{site_id}/replies/{reply_id}/handled",
        summary="Mark a reply handled",
        responses=WRITE_ERRORS,
    )
    async def mark_handled(
        site_id: str, reply_id: str, who: Caller, body: HandledIn | None = None
    ) -> dict[str, Any]:
        site = await managed(site_id, who)
        try:
            return await desk.mark_handled(
                site, reply_id_of(reply_id), who.actor, body.note if body else ""
            )
        except ReplyNotFound:
            raise AuthError(404, f"no reply {reply_id} of site {site_id}") from None

    @router.post(
        "/sites/{site_id}/replies/{reply_id}/answer",
        summary="Answer a reply with one SMS from the same site (paced and audited)",
        status_code=202,
        responses=WRITE_ERRORS,
    )
    async def answer(site_id: str, reply_id: str, body: AnswerIn, who: Caller) -> JSONResponse:
        site = await managed(site_id, who)
        try:
            shown, sent = await desk.answer(site, reply_id_of(reply_id), body.body, who.actor)
        except ReplyNotFound:
            raise AuthError(404, f"no reply {reply_id} of site {site_id}") from None
        return JSONResponse({"reply": shown, "message": sent.as_json()}, status_code=202)

    @router.post(
        "/sites/{site_id}/attachments/{attachment_id}/release",
        summary="Release a quarantined attachment to staff (group admins)",
        status_code=202,
        responses=WRITE_ERRORS,
    )
    async def release(
        site_id: str, attachment_id: str, who: Caller, body: ReleaseIn | None = None
    ) -> JSONResponse:
        site = await access.site_for(site_id, who)
        if not who.administers_group(site.group_id):
            raise AuthError(403, f"your role ({who.role}) cannot release attachments")
        if not fits(attachment_id, 64):
            raise SettingsError({"attachment_id": "not an attachment id (1-64 characters)"})
        eid = await desk.release_attachment(
            site, attachment_id, who.actor, body.reason if body else ""
        )
        return JSONResponse(
            {"attachment_id": attachment_id, "release_requested": True, "event_id": eid},
            status_code=202,
        )

    return router
