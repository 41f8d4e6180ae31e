"""Console pages other than the wizard: login, sites, outbox, credits, replies, opt-outs, audit."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from services.config.console import views
from services.config.console.audit_client import AuditNotFound, AuditUnavailable
from services.config.console.views import OUTBOX_STATES
from shared.privacy.erasure import erase_recipient

if TYPE_CHECKING:
    from services.config.console.app import Console

log = logging.getLogger(__name__)

CHANNELS = ("sms", "email")
SOFT_BOUNCE = "stagger.optout.soft_bounce_counted"
TYPE_PREFIXES = (
    ("", "Any type"),
    ("stagger.site.", "Settings (stagger.site.*)"),
    ("stagger.dispatch.", "Messages (stagger.dispatch.*)"),
    ("stagger.control.", "Operator commands (stagger.control.*)"),
    ("stagger.credits.", "Credits (stagger.credits.*)"),
    ("stagger.provider.", "Provider tests (stagger.provider.*)"),
    ("stagger.reply.", "Replies (stagger.reply.*)"),
    ("stagger.optout.", "Opt-outs (stagger.optout.*)"),
    ("stagger.staff.", "Staff accounts (stagger.staff.*)"),
    ("stagger.access.", "API tokens (stagger.access.*)"),
)


def _utc(value: str | None) -> str | None:
    """A datetime-local value (read as UTC) → ISO 8601 with offset, or None."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=parsed.tzinfo or UTC).isoformat()


def summarise(event: dict[str, Any]) -> str:
    """One line about an audit record's data."""
    data = event.get("data")
    kind = str(event.get("type", ""))
    if not isinstance(data, dict):
        return str(data)[:200]
    if kind.startswith(("stagger.site.settings_changed", "stagger.group.")):
        changes = data.get("changes") or []
        parts = [f"{c.get('path')}: {c.get('old')!r} → {c.get('new')!r}" for c in changes[:4]]
        more = f" (+{len(changes) - 4} more)" if len(changes) > 4 else ""
        return "; ".join(parts) + more if parts else "no changes"
    if kind.startswith("stagger.optout."):
        # Which consent category an opt-out or opt-in covers (none named: every one).
        scope = data.get("category") or "every category"
        how = data.get("how") or ""
        keyword = f" {data['keyword']}" if data.get("keyword") else ""
        return f"{data.get('recipient')}: {scope} ({how}{keyword})"[:200]
    if data.get("consent_category"):
        return f"to: {data.get('to')}, consent category: {data['consent_category']}"[:200]
    for key in ("reason", "error", "body", "recipient", "balance"):
        if key in data and data[key] not in (None, ""):
            return f"{key}: {data[key]}"[:200]
    return json.dumps(data, separators=(",", ":"), default=str)[:200]


def install(console: Console, app: FastAPI) -> None:
    """Register the pages on the console app."""
    from services.config.console.common import (
        PREFIX,
        Forbidden,
        PageNotFound,
    )

    # --- sites ---------------------------------------------------------------------------

    @app.get("/")
    async def home(request: Request) -> Response:
        user = await console.user(request)
        sites = await console.visible_sites(user.who)
        return console.page(request, "home.html", who=user.who, user=user, sites=sites, nav="sites")

    @app.get("/sites/{site_id}")
    async def site_page(request: Request, site_id: str) -> Response:
        user = await console.user(request)
        site = await console.visible_site(site_id, user.who)
        params = request.query_params
        return console.page(
            request,
            "site.html",
            who=user.who,
            user=user,
            site=site,
            nav="sites",
            manages=user.who.manages_site(site.group_id, site.site_id),
            summary=console.settings_summary(site),
            warnings=console.warnings_of(site),
            saved=params.get("saved"),
            unchanged=params.get("unchanged"),
            sent_now=params.get("sent_now"),
        )

    @app.post("/sites/{site_id}/send-now")
    async def send_now(request: Request, site_id: str) -> Response:
        form = await console.form(request)
        user = await console.user(request)
        site = await console.managed_site(site_id, user.who)
        channel = str(form.get("channel"))
        if channel not in CHANNELS:
            raise PageNotFound()
        reason = str(form.get("reason") or "")[:500]
        await console.handlers.send_now(site, channel, actor=user.who.actor, reason=reason)  # type: ignore[arg-type]
        return RedirectResponse(
            f"{PREFIX}/sites/{site_id}/outbox?{urlencode({'sent_now': channel})}", status_code=303
        )

    # --- outbox --------------------------------------------------------------------------

    @app.get("/sites/{site_id}/outbox")
    async def outbox(request: Request, site_id: str) -> Response:
        user = await console.user(request)
        site = await console.visible_site(site_id, user.who)
        channel = request.query_params.get("channel") or None
        state = request.query_params.get("state") or None
        if channel not in (None, *CHANNELS) or state not in (None, *OUTBOX_STATES):
            raise PageNotFound()
        view, down = await console.audit_call(console.outbox_view(user, site, channel, state))
        return console.page(
            request,
            "outbox.html",
            who=user.who,
            user=user,
            site=site,
            nav="sites",
            manages=user.who.manages_site(site.group_id, site.site_id),
            view=view,
            down=down,
            channel=channel,
            state=state,
            states=OUTBOX_STATES,
            reset=request.query_params.get("reset"),
            sent_now=request.query_params.get("sent_now"),
        )

    @app.post("/sites/{site_id}/outbox/reset-failed")
    async def reset_failed(request: Request, site_id: str) -> Response:
        form = await console.form(request)
        user = await console.user(request)
        site = await console.managed_site(site_id, user.who)
        channel = str(form.get("channel"))
        if channel not in CHANNELS:
            raise PageNotFound()
        await console.reset_failed(user, site, channel)
        return RedirectResponse(
            f"{PREFIX}/sites/{site_id}/outbox?{urlencode({'reset': channel})}", status_code=303
        )

    # Replies and inbound email: console/replies_pages.py.

    # --- credits -------------------------------------------------------------------------

    @app.get("/credits")
    async def credits(request: Request) -> Response:
        user = await console.user(request)
        accounts, down = await console.credits_view(user)
        return console.page(
            request,
            "credits.html",
            who=user.who,
            user=user,
            nav="credits",
            accounts=accounts,
            down=down,
        )

    # --- opt-outs ------------------------------------------------------------------------

    @app.get("/optouts")
    async def optouts(request: Request) -> Response:
        user = await console.user(request)
        return await _optouts_page(request, user)

    async def _optouts_page(
        request: Request,
        user: Any,
        *,
        status: int = 200,
        error: str | None = None,
        added: str | None = None,
    ) -> Response:
        who = user.who
        events, down = await console.audit_call(
            console.audit.events(user.token, pages=5, type="stagger.optout.")
        )
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        soft: dict[str, dict[str, Any]] = {}
        for event in events or []:
            data = event.get("data") or {}
            key = (str(data.get("channel")), str(data.get("recipient", "")).lower())
            if str(event.get("type", "")).startswith(SOFT_BOUNCE):
                soft[key[1]] = event  # counted toward the threshold, not an opt-out itself
                continue
            latest[key] = event
        lists = []
        for channel in CHANNELS:
            if who.role in ("group_admin", "auditor"):
                recipients = console.suppression.recipients(who.group_id, channel)
            else:  # a site manager sees the opt-outs the audit service shows them
                recipients = sorted(
                    r
                    for (c, r) in latest
                    if c == channel and not console.suppression.consent(who.group_id, c, r).empty
                )
            rows = []
            for recipient in recipients:
                event = latest.get((channel, recipient))
                data = (event or {}).get("data") or {}
                consent = console.suppression.consent(who.group_id, channel, recipient)
                rows.append(
                    {
                        "recipient": recipient,
                        "categories": consent.describe(),
                        "how": data.get("how"),
                        "keyword": data.get("keyword"),
                        "site_id": data.get("site_id") or (event or {}).get("siteid"),
                        "time": (event or {}).get("time"),
                    }
                )
            lists.append({"channel": channel, "rows": rows})
        sites = await console.visible_sites(who)
        managed = [s for s in sites if who.manages_site(who.group_id, s["site_id"])]
        group = await console.handlers.group(who.group_id)
        return console.page(
            request,
            "optouts.html",
            categories=group.defaults.consent.categories,
            status=status,
            who=who,
            user=user,
            nav="optouts",
            lists=lists,
            soft_bounces=views.soft_bounce_rows(
                soft.values(), lambda r: console.suppression.is_suppressed(who.group_id, "email", r)
            ),
            down=down,
            managed=managed,
            error=error,
            added=added or request.query_params.get("added"),
            removed=request.query_params.get("removed"),
            erased=request.query_params.get("erased"),
            already_erased=request.query_params.get("already_erased"),
            loaded=console.suppression.ready.is_set(),
        )

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
            return await _optouts_page(
                request, user, status=422, error="Choose the site the patient belongs to."
            )
        recipient, error = await console.add_opt_out(
            user,
            channel,
            str(form.get("recipient") or ""),
            site,
            str(form.get("category") or "") or None,
        )
        if error:
            return await _optouts_page(request, user, status=422, error=error)
        back = str(form.get("back") or "")
        if back.startswith(f"{PREFIX}/sites/") and "//" not in back:
            return RedirectResponse(f"{back}?{urlencode({'added': recipient})}", status_code=303)
        return RedirectResponse(
            f"{PREFIX}/optouts?{urlencode({'added': recipient})}", status_code=303
        )

    @app.post("/optouts/remove")
    async def remove_optout(request: Request) -> Response:
        form = await console.form(request)
        user = await console.user(request)
        if not user.who.administers_group(user.who.group_id):
            raise Forbidden("Only a group admin records that a patient opted back in.")
        channel = str(form.get("channel"))
        recipient = str(form.get("recipient") or "")
        if channel not in CHANNELS or not recipient:
            raise PageNotFound()
        if not form.get("confirmed"):
            return await _optouts_page(
                request,
                user,
                status=422,
                error="Tick the box to confirm the patient asked to be contacted again.",
            )
        await console.remove_opt_out(user, channel, recipient)
        return RedirectResponse(
            f"{PREFIX}/optouts?{urlencode({'removed': recipient})}", status_code=303
        )

    @app.post("/erasures")
    async def erase(request: Request) -> Response:
        """A group admin erases a patient's personal data (docs/privacy.md)."""
        form = await console.form(request)
        user = await console.user(request)
        if not user.who.administers_group(user.who.group_id):
            raise Forbidden("Only a group admin erases a patient's personal data.")
        recipient = str(form.get("recipient") or "").strip()
        if not recipient or not form.get("confirmed"):
            return await _optouts_page(
                request,
                user,
                status=422,
                error="Enter the phone number or email address and tick the box to confirm.",
            )
        done = await erase_recipient(
            console.nc, console.handlers.personal, user.who.group_id, recipient, user.who.actor
        )
        note = "erased" if done.keys_erased else "already_erased"
        return RedirectResponse(f"{PREFIX}/optouts?{urlencode({note: '1'})}", status_code=303)

    # --- audit ---------------------------------------------------------------------------

    def _filters(request: Request) -> dict[str, Any]:
        q = request.query_params
        return {
            "site_id": q.get("site_id") or None,
            "type": q.get("type") or None,
            "message_id": q.get("message_id") or None,
            "actor": q.get("actor") or None,
            "since": q.get("since") or None,
            "until": q.get("until") or None,
        }

    @app.get("/audit")
    async def audit(request: Request) -> Response:
        user = await console.user(request)
        filters = _filters(request)
        cursor = request.query_params.get("cursor") or "0"
        params = {**filters, "since": _utc(filters["since"]), "until": _utc(filters["until"])}
        page: Any = None
        down = None
        missing = False
        try:
            page = await console.audit.get(
                user.token,
                "/events",
                {**params, "cursor": cursor if cursor.isdigit() else 0, "limit": 100},
            )
        except AuditUnavailable as exc:
            down = str(exc)
        except AuditNotFound:
            missing = True
        next_link = None
        if page and page.get("next_cursor") is not None:
            next_link = "?" + urlencode(
                {**{k: v for k, v in filters.items() if v}, "cursor": page["next_cursor"]}
            )
        export = urlencode({k: v for k, v in filters.items() if v})
        return console.page(
            request,
            "audit.html",
            who=user.who,
            user=user,
            nav="audit",
            filters=filters,
            events=(page or {}).get("events", []),
            summarise=summarise,
            next_link=next_link,
            down=down,
            missing=missing,
            sites=await console.visible_sites(user.who),
            types=TYPE_PREFIXES,
            export=export,
        )

    @app.get("/audit/export")
    async def audit_export(request: Request) -> Response:
        user = await console.user(request)
        filters = _filters(request)
        fmt = request.query_params.get("format", "csv")
        if fmt not in ("csv", "jsonl"):
            raise PageNotFound()
        params = {
            "format": fmt,
            "site_id": filters["site_id"],
            "type": filters["type"],
            "since": _utc(filters["since"]),
            "until": _utc(filters["until"]),
        }
        try:
            response, body = await console.audit.stream(user.token, "/export", params)
        except AuditUnavailable as exc:
            return console.page(
                request,
                "error.html",
                status=503,
                who=user.who,
                user=user,
                title="Audit service unavailable",
                message=f"The export could not be made ({exc}). Try later.",
            )
        return StreamingResponse(
            body,
            media_type=response.headers.get("content-type", "text/plain"),
            headers={"Content-Disposition": f'attachment; filename="stagger-audit.{fmt}"'},
        )

    @app.get("/audit/verify")
    async def audit_verify(request: Request) -> Response:
        user = await console.user(request)
        if user.who.role not in ("auditor", "group_admin"):
            raise Forbidden("Only auditors and group admins verify the trail.")
        result, down = await console.audit_call(console.audit.get(user.token, "/verify"))
        return console.page(
            request, "verify.html", who=user.who, user=user, nav="audit", result=result, down=down
        )

    @app.get("/messages/{message_id}")
    async def timeline(request: Request, message_id: str) -> Response:
        user = await console.user(request)
        try:
            found, down = await console.audit_call(
                console.audit.get(user.token, f"/messages/{message_id}/timeline")
            )
        except AuditNotFound:
            raise PageNotFound() from None
        state = (found or {}).get("state") or {}
        if state.get("group_id"):
            await console.opened(state["group_id"], [state], "recipient")
        return console.page(
            request,
            "timeline.html",
            who=user.who,
            user=user,
            nav="audit",
            message_id=message_id,
            found=found,
            down=down,
            summarise=summarise,
        )
