"""Console pages other than the wizard: login, sites, outbox, credits, replies, opt-outs, audit."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from services.config.console.audit_client import AuditNotFound, AuditUnavailable
from services.config.console.views import OUTBOX_STATES

if TYPE_CHECKING:
    from services.config.console.app import Console

log = logging.getLogger(__name__)

CHANNELS = ("sms", "email")
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

    # Opt-outs, erasure and the subject-access export: console/optouts_pages.py.

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
