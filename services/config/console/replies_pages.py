"""Console pages for what patients send back: SMS replies (unread count, mark handled, answer
with one SMS, filters by site and keyword) and each site's inbound email with its quarantined
attachments (Release, for group admins).

Replies come from the config read model (`adapters/replies`); inbound email from the audit
service (`stagger.inbound.*`), its sealed sender, subject and attachment names opened here
("erased" once the sender is erased; older clear events as they are). Actions go through
`handlers.replies.ReplyDesk`, as the API's do.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from services.config.handlers.replies import MAX_ANSWER, ReplyDesk, ReplyNotFound, search
from shared.domain.site_settings import SettingsError
from shared.privacy.inbound_email import open_fields

if TYPE_CHECKING:
    from services.config.console.app import Console
    from services.config.console.common import User

STATUSES = (("unread", "To handle"), ("handled", "Handled"), ("automatic", "Keywords"), ("", "All"))


def inbound_messages(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Inbound emails (newest first) with each attachment's release state folded in."""
    released: dict[str, dict[str, Any]] = {}
    received: list[dict[str, Any]] = []
    for event in events:
        kind = str(event.get("type", ""))
        data = event.get("data") or {}
        if kind.startswith("stagger.inbound.attachment_released"):
            released[str(data.get("attachment_id"))] = event
        elif kind.startswith("stagger.inbound.email_received"):
            received.append(event)
    out = []
    for event in reversed(received):
        data = event.get("data") or {}
        attachments = []
        for a in data.get("attachments") or []:
            done = released.get(str(a.get("attachment_id")))
            attachments.append(
                {
                    **a,
                    "released": done is not None,
                    "released_by": (done or {}).get("actor"),
                    "released_at": (done or {}).get("time"),
                }
            )
        out.append({**data, "event_id": event.get("id"), "attachments": attachments})
    return out


def install(console: Console, app: FastAPI) -> None:
    """Register the replies and inbound-email pages."""
    from services.config.console.common import PREFIX, Forbidden, PageNotFound

    desk = ReplyDesk.of(console.nc, console.handlers)

    async def site_ids(user: User, only: str | None) -> list[str]:
        if only:
            return [(await console.visible_site(only, user.who)).site_id]
        return [s["site_id"] for s in await console.visible_sites(user.who)]

    async def render(request: Request, user: User, site_id: str | None) -> Response:
        params = request.query_params
        keyword = (params.get("q") or "").strip()[:100]
        status = params.get("status", "unread")
        if status not in {s for s, _ in STATUSES}:
            raise PageNotFound()
        chosen = site_id or params.get("site_id") or None
        site = await console.visible_site(chosen, user.who) if chosen else None
        ids = await site_ids(user, chosen)
        sites = await console.visible_sites(user.who)
        rows = await search(
            console.handlers.db,
            console.handlers.personal,
            user.who.group_id,
            ids,
            keyword=keyword or None,
            status=status or None,
        )
        unread = await console.unread_replies(user.who)
        names = {s["site_id"]: s.get("name") or s["site_id"] for s in sites}
        return console.page(
            request,
            "replies.html",
            who=user.who,
            user=user,
            site=site,
            sites=sites,
            names=names,
            nav="replies" if site is None else "sites",
            manages={s: user.who.manages_site(user.who.group_id, s) for s in names},
            replies=rows,
            unread=unread,
            unread_total=sum(unread.values()),
            keyword=keyword,
            chosen_status=status,
            statuses=STATUSES,
            max_answer=MAX_ANSWER,
            added=params.get("added"),
            done=params.get("done"),
            error=params.get("error"),
        )

    @app.get("/replies")
    async def all_replies(request: Request) -> Response:
        user = await console.user(request)
        return await render(request, user, None)

    @app.get("/sites/{site_id}/replies")
    async def site_replies(request: Request, site_id: str) -> Response:
        user = await console.user(request)
        return await render(request, user, site_id)

    def back_to(form: Any, site_id: str, **notice: str) -> RedirectResponse:
        back = str(form.get("back") or "")
        if not back.startswith(f"{PREFIX}/") or "//" in back or "\\" in back:
            back = f"{PREFIX}/sites/{site_id}/replies"
        joiner = "&" if "?" in back else "?"
        return RedirectResponse(f"{back}{joiner}{urlencode(notice)}", status_code=303)

    @app.post("/sites/{site_id}/replies/{reply_id}/handled")
    async def mark_handled(request: Request, site_id: str, reply_id: str) -> Response:
        form = await console.form(request)
        user = await console.user(request)
        site = await console.managed_site(site_id, user.who)
        try:
            await desk.mark_handled(site, reply_id[:64], user.who.actor)
        except ReplyNotFound:
            raise PageNotFound() from None
        return back_to(form, site_id, done="handled")

    @app.post("/sites/{site_id}/replies/{reply_id}/answer")
    async def answer(request: Request, site_id: str, reply_id: str) -> Response:
        form = await console.form(request)
        user = await console.user(request)
        site = await console.managed_site(site_id, user.who)
        try:
            await desk.answer(site, reply_id[:64], str(form.get("body") or ""), user.who.actor)
        except ReplyNotFound:
            raise PageNotFound() from None
        except SettingsError as exc:
            first = next(iter(exc.errors.values()), "the answer was refused")
            return back_to(form, site_id, error=f"Not sent: {first}")
        return back_to(form, site_id, done="answered")

    # --- inbound email -------------------------------------------------------------------

    @app.get("/sites/{site_id}/inbox")
    async def inbox(request: Request, site_id: str) -> Response:
        user = await console.user(request)
        site = await console.visible_site(site_id, user.who)
        events, down = await console.audit_call(
            console.audit.events(user.token, pages=3, type="stagger.inbound.", site_id=site_id)
        )
        personal = console.handlers.personal
        messages = [
            await open_fields(personal, site.group_id, m) for m in inbound_messages(events or [])
        ]
        return console.page(
            request,
            "inbox.html",
            who=user.who,
            user=user,
            site=site,
            nav="sites",
            messages=messages,
            releases=user.who.administers_group(site.group_id) and user.writes,
            down=down,
            released=request.query_params.get("released"),
        )

    @app.post("/sites/{site_id}/inbox/attachments/{attachment_id}/release")
    async def release(request: Request, site_id: str, attachment_id: str) -> Response:
        form = await console.form(request)
        user = await console.user(request)
        site = await console.visible_site(site_id, user.who)
        if not user.who.administers_group(site.group_id):
            raise Forbidden("Only a group admin can release an attachment.")
        attachment = attachment_id[:64]
        reason = str(form.get("reason") or "released from the console")[:500]
        await desk.release_attachment(site, attachment, user.who.actor, reason)
        await _released(console, user, site_id, attachment)
        return RedirectResponse(
            f"{PREFIX}/sites/{site_id}/inbox?{urlencode({'released': attachment})}",
            status_code=303,
        )


async def _released(console: Console, user: User, site_id: str, attachment: str) -> None:
    """Wait (bounded) until the audit trail shows the gateway's release, so the page that
    follows shows it; a gateway that is down leaves the request on CONTROL for later."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while loop.time() < deadline:
        events, _ = await console.audit_call(
            console.audit.events(
                user.token, pages=1, type="stagger.inbound.attachment_released", site_id=site_id
            )
        )
        if any((e.get("data") or {}).get("attachment_id") == attachment for e in events or []):
            return
        await asyncio.sleep(0.1)
