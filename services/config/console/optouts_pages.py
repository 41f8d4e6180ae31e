"""The console's opt-out page and its privacy actions: the lists (per channel, with consent
categories), staff opt-outs and opt-ins, erasure and the subject-access export (group admins).

Opt-outs are recorded sealed, filed by the recipient's salted hash (docs/privacy.md). The page
opens them for group admins, who act on patients' requests and may read their numbers; a site
manager or an auditor sees a masked form (`shared.privacy.shown`): a practice manager checking
whether the patient on the phone is on the list recognises the last digits or the first letter
and domain, and the page cannot be used to copy the practice's patient list. An erased patient
reads "erased" for everyone.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from services.config.console import views
from shared.domain.phone import InvalidPhoneNumber, normalise_phone
from shared.privacy.cipher import is_personal, tag_of
from shared.privacy.erasure import erase_recipient
from shared.privacy.export import export_recipient
from shared.privacy.shown import is_tag, masked

if TYPE_CHECKING:
    from services.config.console.app import Console
    from services.config.console.common import User

CHANNELS = ("sms", "email")
SOFT_BOUNCE = "stagger.optout.soft_bounce_counted"


def install(console: Console, app: FastAPI) -> None:
    """Register the opt-out and privacy routes on the console app."""
    from services.config.console.common import PREFIX, Forbidden, PageNotFound

    personal = console.handlers.personal

    def key_of(group_id: str, recipient: str, tag: str | None = None) -> str:
        """What the list files a recipient under: their salted hash."""
        if tag:
            return tag
        if is_personal(recipient):
            return tag_of(recipient)
        return recipient if is_tag(recipient) else personal.tag(group_id, recipient)

    async def typed(group_id: str, raw: str) -> str:
        """A number or address as staff type it, in the form it was tagged in: a national
        number read in the group's region ("0412 345 678" is "+61412345678" in Australia)."""
        value = raw.strip()
        if "@" in value:
            return value.lower()
        region = (await console.handlers.group(group_id)).defaults.profile.region
        try:
            return normalise_phone(value, region)
        except InvalidPhoneNumber:
            return value

    async def shown(user: User, group_id: str, recipient: str) -> str:
        """The recipient as this user may see them (opened, masked, or the hash)."""
        opened = await personal.open(group_id, recipient) or ""
        if user.who.administers_group(group_id):
            return opened
        return masked(opened)

    async def page(
        request: Request, user: User, *, status: int = 200, error: str | None = None
    ) -> Response:
        who = user.who
        g = who.group_id
        events, down = await console.audit_call(
            console.audit.events(user.token, pages=5, type="stagger.optout.")
        )
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        soft: dict[str, dict[str, Any]] = {}
        for event in events or []:
            data = event.get("data") or {}
            recipient = str(data.get("recipient", ""))
            key = (str(data.get("channel")), key_of(g, recipient, data.get("recipient_tag")))
            if str(event.get("type", "")).startswith(SOFT_BOUNCE):
                # Counted toward the threshold, not an opt-out itself; filed by the hash (an
                # older count names the address, which stays its name on the page).
                soft[key[1]] = {**event, "data": {**data, "recipient": key[1]}, "name": recipient}
                continue
            latest[key] = event
        lists = []
        for channel in CHANNELS:
            if who.role in ("group_admin", "auditor"):
                keys = console.suppression.recipients(g, channel)
            else:  # a site manager sees the opt-outs the audit service shows them
                keys = sorted(
                    k
                    for (c, k) in latest
                    if c == channel and not console.suppression.consent(g, c, k).empty
                )
            rows = []
            for tag in keys:
                event = latest.get((channel, tag))
                data = (event or {}).get("data") or {}
                stored = str(data.get("recipient") or tag)
                rows.append(
                    {
                        "recipient": await shown(user, g, stored),
                        # What "Opt back in" names: the sealed value (or the hash alone).
                        "stored": stored,
                        "categories": console.suppression.consent(g, channel, tag).describe(),
                        "how": data.get("how"),
                        "keyword": data.get("keyword"),
                        "site_id": data.get("site_id") or (event or {}).get("siteid"),
                        "time": (event or {}).get("time"),
                    }
                )
            lists.append({"channel": channel, "rows": rows})
        bounces = views.soft_bounce_rows(
            soft.values(), lambda r: console.suppression.is_suppressed(g, "email", r)
        )
        names = {
            key: str(
                ((latest.get(("email", key)) or {}).get("data") or {}).get("recipient")
                or event["name"]
            )
            for key, event in soft.items()
        }
        for row in bounces:
            row["recipient"] = await shown(user, g, names[row["recipient"]])
        sites = await console.visible_sites(who)
        managed = [s for s in sites if who.manages_site(g, s["site_id"])]
        group = await console.handlers.group(g)
        params = request.query_params
        return console.page(
            request,
            "optouts.html",
            categories=group.defaults.consent.categories,
            status=status,
            who=who,
            user=user,
            nav="optouts",
            lists=lists,
            soft_bounces=bounces,
            down=down,
            managed=managed,
            error=error,
            added=params.get("added"),
            removed=params.get("removed"),
            erased=params.get("erased"),
            already_erased=params.get("already_erased"),
            loaded=console.suppression.ready.is_set(),
        )

    async def admin_form(request: Request, refusal: str) -> tuple[Any, User]:
        """The posted form and its user, who must administer their group (else `refusal`)."""
        form = await console.form(request)
        user = await console.user(request)
        if not user.who.administers_group(user.who.group_id):
            raise Forbidden(refusal)
        return form, user

    @app.get("/optouts")
    async def optouts(request: Request) -> Response:
        return await page(request, await console.user(request))

    @app.post("/optouts")
    async def add_optout(request: Request) -> Response:
        form = await console.form(request)
        user = await console.user(request)
        if not user.writes:
            raise Forbidden("Your role can read but not change anything.")
        channel = str(form.get("channel"))
        if channel not in CHANNELS:
            raise PageNotFound()
        site_id = str(form.get("site_id") or "")
        site = await console.managed_site(site_id, user.who) if site_id else None
        if site is None and user.who.role != "group_admin":
            return await page(
                request, user, status=422, error="Choose the site the patient belongs to."
            )
        recipient, error = await console.add_opt_out(
            user,
            channel,
            str(form.get("recipient") or ""),
            site,
            str(form.get("category") or "") or None,
        )
        if error or recipient is None:
            return await page(request, user, status=422, error=error)
        # The address bar (and any access log) gets the masked form only.
        note = urlencode({"added": masked(recipient)})
        back = str(form.get("back") or "")
        if back.startswith(f"{PREFIX}/sites/") and "//" not in back:
            return RedirectResponse(f"{back}?{note}", status_code=303)
        return RedirectResponse(f"{PREFIX}/optouts?{note}", status_code=303)

    @app.post("/optouts/remove")
    async def remove_optout(request: Request) -> Response:
        form, user = await admin_form(
            request, "Only a group admin records that a patient opted back in."
        )
        channel = str(form.get("channel"))
        recipient = str(form.get("recipient") or "")
        if channel not in CHANNELS or not recipient:
            raise PageNotFound()
        if not form.get("confirmed"):
            return await page(
                request,
                user,
                status=422,
                error="Tick the box to confirm the patient asked to be contacted again.",
            )
        await console.remove_opt_out(user, channel, recipient)
        note = masked(await personal.open(user.who.group_id, recipient) or "")
        return RedirectResponse(f"{PREFIX}/optouts?{urlencode({'removed': note})}", status_code=303)

    @app.post("/erasures")
    async def erase(request: Request) -> Response:
        """A group admin erases a patient's personal data (docs/privacy.md)."""
        form, user = await admin_form(
            request, "Only a group admin erases a patient's personal data."
        )
        recipient = str(form.get("recipient") or "").strip()
        if not recipient or not form.get("confirmed"):
            return await page(
                request,
                user,
                status=422,
                error="Enter the phone number or email address and tick the box to confirm.",
            )
        done = await erase_recipient(
            console.nc,
            personal,
            user.who.group_id,
            await typed(user.who.group_id, recipient),
            user.who.actor,
        )
        note = "erased" if done.keys_erased else "already_erased"
        return RedirectResponse(f"{PREFIX}/optouts?{urlencode({note: '1'})}", status_code=303)

    @app.post("/privacy/export")
    async def export(request: Request) -> Response:
        """A group admin downloads what Stagger holds about one patient (subject access), as
        `GET /api/v1/groups/{group}/recipients/{recipient}/export` answers it. A form post, so
        the number never travels in a URL."""
        form, user = await admin_form(
            request, "Only a group admin exports a patient's personal data."
        )
        recipient = str(form.get("recipient") or "").strip()
        if not recipient:
            return await page(
                request, user, status=422, error="Enter the phone number or email address."
            )
        g = user.who.group_id
        found = await export_recipient(console.nc, personal, g, await typed(g, recipient))
        name = f"subject-access-{found['recipient_tag'][:12]}.json"
        return Response(
            json.dumps(found, indent=2, ensure_ascii=False),
            media_type="application/json",
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "Cache-Control": "no-store",
            },
        )
