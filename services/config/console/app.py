"""The web console: server-rendered pages under `/console`, served by the config service.

Every page is plain HTML from Jinja2 templates and works without JavaScript; `static/console.js`
only swaps parts of a page after a form post (sessions, the forecast, the provider test).
Writes go through the same code as the JSON API: `ConfigHandlers` in-process, or the API's own
routes called in-process (the provider test), never a copy of their rules.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from nats.aio.client import Client
from starlette.datastructures import FormData
from starlette.staticfiles import StaticFiles

from services.config.adapters import read_model
from services.config.adapters.credit_reports import account_credits
from services.config.aggregates import SiteState
from services.config.console import views
from services.config.console.audit_client import AuditClient, AuditUnavailable
from services.config.console.batch_panel import recorded_batch
from services.config.console.drafts import DraftStore
from services.config.console.forms import STEPS
from services.config.console.registry import SessionRegistry
from services.config.console.session import (
    COOKIE,
    COOKIE_PATH,
    CSRF_FIELD,
    Session,
    SessionCodec,
)
from services.config.forecasting import site_forecast
from services.config.handlers import ConfigHandlers, NotFound
from shared.bus import subjects
from shared.bus.topology import CONTROL
from shared.config import StaggerSettings
from shared.domain.accounts import sms_account_id
from shared.domain.phone import InvalidPhoneNumber, normalise_phone
from shared.domain.site_settings import valid_email, warnings
from shared.events.envelope import make_event
from shared.events.schemas.control import ResetFailedRequested
from shared.eventstore import EventStore
from shared.suppression import SuppressionList, record_opt_in, record_opt_out
from shared.tokens import Principal, TokenRegistry

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
PREFIX = "/console"
PARTIAL_HEADER = "x-stagger-partial"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class LoginRequired(Exception):
    """No valid token in the session."""


class PageNotFound(Exception):
    """Nothing the caller may see here (another site's page answers this too)."""


class Forbidden(Exception):
    """The caller's role may not do this (auditors write nothing)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CsrfFailed(Exception):
    """A POST without this session's CSRF token."""


@dataclass
class User:
    """A signed-in person: their session and what their token allows."""

    session: Session
    who: Principal

    @property
    def token(self) -> str:
        assert self.session.token is not None
        return self.session.token

    @property
    def writes(self) -> bool:
        """Whether any write control is shown at all."""
        return self.who.role in ("group_admin", "site_manager")


def web_origin(url: str) -> str:
    """The origin a browser sends for pages of `url` (scheme://host[:port], default port
    left out)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def safe_next(value: str | None) -> str:
    """A post-login destination inside the console, never another origin."""
    if value and value.startswith(PREFIX + "/") and "//" not in value and "\\" not in value:
        return value
    return PREFIX + "/"


class Console:
    """Routes, templates, sessions and drafts of the console."""

    def __init__(
        self,
        settings: StaggerSettings,
        nc: Client,
        handlers: ConfigHandlers,
        tokens: TokenRegistry,
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.handlers = handlers
        self.tokens = tokens
        self.codec = SessionCodec.from_settings(settings)
        self.sessions = SessionRegistry(nc)
        # Behind a TLS proxy the public URL, not the hop from the proxy, says what the browser
        # sees: its origin is the only one a form may come from, and https makes the cookie
        # Secure even when the proxy speaks plain http to us.
        self.public_origin = web_origin(settings.public_url)
        self.public_https = self.public_origin.startswith("https://")
        self.drafts = DraftStore()
        self.audit = AuditClient(settings.audit_api_url())
        self.suppression = SuppressionList(nc)
        self.api: httpx.AsyncClient | None = None
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            short_time=views.short_time,
            local_time=views.local_time,
            window=views.describe_window,
            window_id=views.window_id,
            number=views.number,
            show=views.show_value,
        )
        self.env.globals.update(prefix=PREFIX, steps=STEPS, csrf_field=CSRF_FIELD)

    # --- wiring ------------------------------------------------------------------------

    async def follow(self) -> None:
        """Background work: the opt-out lists (run with `ctx.spawn`)."""
        await self.suppression.follow()

    def mount(self, app: FastAPI) -> None:
        """Serve the console under /console of `app`; `/` redirects there."""
        # The API's own routes, called in-process with the user's token (same rules, no copy).
        self.api = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://config.internal", timeout=30
        )

        async def to_console(_: Request) -> RedirectResponse:
            return RedirectResponse(PREFIX + "/", status_code=307)

        app.add_route("/", to_console, include_in_schema=False)
        app.add_route(PREFIX, to_console, include_in_schema=False)
        app.mount(PREFIX, self.build_app())

    def build_app(self) -> FastAPI:
        """The console as an ASGI app (mounted at /console)."""
        from services.config.console import batches, dashboard, pages, wizard

        sub = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        sub.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
        self._install_session(sub)
        self._install_errors(sub)
        pages.install(self, sub)
        wizard.install(self, sub)
        batches.install(self, sub)
        dashboard.install(self, sub)
        return sub

    def _install_session(self, sub: FastAPI) -> None:
        codec = self.codec
        public_https = self.public_https

        @sub.middleware("http")
        async def session_cookie(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            session = codec.load(request.cookies.get(COOKIE)) or Session()
            request.state.session = session
            response = await call_next(request)
            if session.dirty:
                response.set_cookie(
                    COOKIE,
                    codec.dump(session),
                    path=COOKIE_PATH,
                    httponly=True,
                    samesite="strict",
                    # The scheme is https only from a trusted proxy's X-Forwarded-Proto (or a
                    # direct TLS listener): uvicorn ignores the header from anyone else.
                    secure=public_https or request.url.scheme == "https",
                )
            if not request.url.path.startswith(PREFIX + "/static/"):
                response.headers["Cache-Control"] = "no-store"
            response.headers["Content-Security-Policy"] = CSP
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "same-origin"
            response.headers["X-Frame-Options"] = "DENY"
            return response

    def _install_errors(self, sub: FastAPI) -> None:
        @sub.exception_handler(LoginRequired)
        async def _login(request: Request, _: LoginRequired) -> Response:
            if request.method != "GET":
                return self.page(
                    request,
                    "error.html",
                    status=401,
                    title="Signed out",
                    message="Your session ended. Sign in again and retry.",
                )
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(
                f"{PREFIX}/login?{urlencode({'next': target})}", status_code=303
            )

        @sub.exception_handler(PageNotFound)
        async def _missing(request: Request, _: PageNotFound) -> Response:
            return self.page(
                request,
                "error.html",
                status=404,
                title="Not found",
                message="There is nothing here that you may see.",
            )

        @sub.exception_handler(Forbidden)
        async def _forbidden(request: Request, exc: Forbidden) -> Response:
            return self.page(
                request, "error.html", status=403, title="Not allowed", message=exc.message
            )

        @sub.exception_handler(CsrfFailed)
        async def _csrf(request: Request, _: CsrfFailed) -> Response:
            return self.page(
                request,
                "error.html",
                status=403,
                title="Form expired",
                message="This form is out of date or did not come from this "
                "console. Reload the page and try again.",
            )

    # --- request helpers -----------------------------------------------------------------

    @staticmethod
    def session_of(request: Request) -> Session:
        return request.state.session  # type: ignore[no-any-return]

    async def user(self, request: Request) -> User:
        """The signed-in user, or LoginRequired."""
        session = self.session_of(request)
        if not session.token:
            raise LoginRequired()
        # Signed out elsewhere (or the cookie is a copy of a signed-out one): the cookie still
        # opens, but its session id is no longer live.
        if not await self.sessions.live(session.sid):
            session.rotate(None)
            raise LoginRequired()
        who = await self.tokens.authenticate(session.token)
        if who is None or who.role == "sender":
            await self.sessions.end(session.sid)
            session.rotate(None)
            raise LoginRequired()
        return User(session, who)

    async def sign_in(self, request: Request, token: str, who: Principal) -> None:
        """Start a signed-in session (new id and CSRF token) for an accepted token."""
        session = self.session_of(request)
        if session.token:  # signing in over a signed-in session: end the old one everywhere
            await self.sessions.end(session.sid)
        session.rotate(token)
        await self.sessions.start(session.sid, who.token_id)
        log.info(
            "console sign-in",
            extra={
                "token_id": who.token_id,
                "group_id": who.group_id,
                "client": client_of(request),
            },
        )

    async def sign_out(self, request: Request) -> None:
        """End the session on every replica, whichever copy of its cookie is presented next."""
        session = self.session_of(request)
        if session.token:
            await self.sessions.end(session.sid)
            log.info("console sign-out", extra={"client": client_of(request)})
        self.drafts.drop(session.sid)
        session.rotate(None)

    def origin_ok(self, request: Request) -> bool:
        """A posted form came from a page of the console (absent Origin: old browsers).

        With an https public URL only its origin is accepted. With a plain-http one (a
        development or direct deployment) the request's own origin is accepted too, so the
        console works on whatever address it is reached at.
        """
        origin = request.headers.get("origin")
        if not origin:
            return True
        origin = origin.strip().lower()
        if origin == self.public_origin:
            return True
        if self.public_https:
            return False
        return origin in (f"{request.url.scheme}://{request.url.netloc}".lower(), "null")

    async def form(self, request: Request) -> FormData:
        """The posted form, after checking its CSRF token (403 without it)."""
        if not self.origin_ok(request):
            raise CsrfFailed()
        form = await request.form()
        if not self.session_of(request).csrf_ok(form.get(CSRF_FIELD)):  # type: ignore[arg-type]
            raise CsrfFailed()
        return form

    async def visible_site(self, site_id: str, who: Principal) -> SiteState:
        """A site the caller may see, or the 404 page."""
        try:
            subjects.check_token(site_id, "site id")
            site = await self.handlers.site(site_id)
        except (NotFound, subjects.InvalidToken):
            raise PageNotFound() from None
        if not who.sees_site(site.group_id, site.site_id):
            raise PageNotFound()
        return site

    async def managed_site(self, site_id: str, who: Principal) -> SiteState:
        """A site the caller may change, else 404 (unseen) or 403 (read-only role)."""
        site = await self.visible_site(site_id, who)
        if not who.manages_site(site.group_id, site.site_id):
            raise Forbidden(
                f"Your role ({who.role.replace('_', ' ')}) can read but not change anything."
            )
        return site

    async def visible_sites(self, who: Principal) -> list[dict[str, Any]]:
        """The sites of the caller's group that the caller may see, by name."""
        async with self.handlers.db() as session:
            rows = await read_model.list_sites(session, who.group_id)
        return [r for r in rows if who.sees_site(who.group_id, r["site_id"])]

    def page(
        self, request: Request, template: str, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """Render a full page."""
        session = self.session_of(request)
        html = self.env.get_template(template).render(
            request_path=request.url.path, csrf=session.csrf, **context
        )
        return HTMLResponse(html, status_code=status)

    @staticmethod
    def partial(request: Request) -> bool:
        """True when console.js asked for parts of the page."""
        return bool(request.headers.get(PARTIAL_HEADER))

    # --- shared reads ------------------------------------------------------------------

    async def audit_call(self, call: Awaitable[Any]) -> tuple[Any, str | None]:
        """(result, None), or (None, why) when the audit service is unavailable."""
        try:
            return await call, None
        except AuditUnavailable as exc:
            log.warning("audit service unavailable", extra={"error": str(exc)})
            return None, str(exc)

    # --- commands ----------------------------------------------------------------------

    async def reset_failed(self, user: User, site: SiteState, channel: str) -> str:
        """Ask the channel's gateway to retry the site's failed messages (CONTROL)."""
        data = ResetFailedRequested(
            group_id=site.group_id,
            site_id=site.site_id,
            channel=channel,  # type: ignore[arg-type]
        )
        event = make_event(
            data,
            source="config",
            actor=user.who.actor,
            subject=site.site_id,
            group_id=site.group_id,
            site_id=site.site_id,
        )
        await EventStore(self.nc, CONTROL).append(
            subjects.gateway_control(channel, "reset_failed", site.site_id),  # type: ignore[arg-type]
            event,
        )
        return event.id

    async def api_post(self, user: User, path: str) -> httpx.Response:
        """POST to the JSON API in-process with the user's token."""
        assert self.api is not None, "console not mounted"
        return await self.api.post(path, headers={"Authorization": f"Bearer {user.token}"})

    async def add_opt_out(
        self, user: User, channel: str, raw: str, site: SiteState | None
    ) -> tuple[str | None, str | None]:
        """(normalised recipient, None) after recording a staff opt-out, or (None, error)."""
        if channel == "sms":
            region = site.settings.profile.region if site else None
            try:
                recipient = normalise_phone(raw, region)
            except InvalidPhoneNumber as exc:
                return None, str(exc)
        else:
            recipient = raw.strip().lower()
            if not valid_email(recipient):
                return None, "not a valid email address"
        await record_opt_out(
            self.nc,
            group_id=user.who.group_id,
            channel=channel,  # type: ignore[arg-type]
            recipient=recipient,
            how="staff",
            actor=user.who.actor,
            site_id=site.site_id if site else None,
        )
        await self._until(
            lambda: self.suppression.is_suppressed(user.who.group_id, channel, recipient)
        )
        return recipient, None

    async def remove_opt_out(self, user: User, channel: str, recipient: str) -> None:
        """Record that the patient asked to be contacted again (group admins only)."""
        await record_opt_in(
            self.nc,
            group_id=user.who.group_id,
            channel=channel,  # type: ignore[arg-type]
            recipient=recipient,
            how="staff",
            actor=user.who.actor,
        )
        await self._until(
            lambda: not self.suppression.is_suppressed(user.who.group_id, channel, recipient)
        )

    @staticmethod
    async def _until(condition: Callable[[], bool], patience: float = 3.0) -> None:
        """Wait (bounded) until the followed list reflects our own write."""
        deadline = asyncio.get_running_loop().time() + patience
        # The suppression list has no change notification: poll it, bounded.
        while not condition() and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    # --- outbox, credits ---------------------------------------------------------------

    async def outbox_view(
        self, user: User, site: SiteState, channel: str | None, state: str | None
    ) -> dict[str, Any]:
        """Counts, the message list and the latest batch's progress, from the audit service."""
        token = user.token
        listing = await self.audit.get(
            token,
            f"/sites/{site.site_id}/outbox",
            {"channel": channel, "state": state, "limit": 200},
        )
        everything = await self.audit.get(
            token, f"/sites/{site.site_id}/outbox", {"channel": channel, "limit": 1000}
        )
        states = {m["message_id"]: m.get("state") for m in everything.get("messages", [])}
        latest = max(
            (views.parse_time(m.get("queued_at")) for m in everything.get("messages", [])),
            default=None,
            key=lambda t: t or datetime.min.replace(tzinfo=UTC),
        )
        batch = None
        finish = None
        batch_channel = channel or "sms"
        # Exact, from the batch read model; the guess over recent messages only for messages
        # that came without a batch id (published to the bus directly before batches existed).
        recorded = await recorded_batch(self.handlers.db, site.site_id, channel)
        if recorded is not None:
            batch, batch_channel = recorded
        elif latest is not None:
            queued_events = await self.audit.events(
                token,
                pages=5,
                type="stagger.dispatch.queued",
                site_id=site.site_id,
                since=(latest - timedelta(hours=1)).isoformat(),
            )
            if channel:
                queued_events = [
                    e for e in queued_events if (e.get("data") or {}).get("channel") == channel
                ]
            batch = views.latest_batch(queued_events, states)
            if queued_events:
                batch_channel = (queued_events[-1].get("data") or {}).get("channel") or "sms"
        if batch is not None and batch.queued:
            ahead = max(int(listing["counts"].get("queued", 0)) - batch.queued, 0)
            finish = site_forecast(
                site.settings,
                "email" if batch_channel == "email" else "sms",
                batch.queued,
                ahead,
                30,
            )
        return {
            "counts": listing.get("counts", {}),
            "messages": listing.get("messages", []),
            "batch": batch,
            "batch_channel": batch_channel,
            "finish": finish,
        }

    async def credits_view(self, user: User) -> tuple[list[dict[str, Any]], str | None]:
        """Each provider account of the visible sites with its balance history."""
        accounts: dict[str, dict[str, Any]] = {}
        for row in await self.visible_sites(user.who):
            try:
                site = await self.handlers.site(row["site_id"])
            except NotFound:
                continue
            provider = site.settings.sms.provider
            account = sms_account_id(provider, site.group_id)
            if account is None:
                continue
            entry = accounts.setdefault(
                account,
                {"account": account, "provider": provider.kind, "sites": [], "threshold": 0},
            )
            entry["sites"].append({"site_id": site.site_id, "name": site.name})
            entry["threshold"] = max(entry["threshold"], site.settings.sms.low_credit_threshold)
        since = datetime.now(UTC) - timedelta(days=30)
        for entry in accounts.values():
            # From the account's own subject in PROVIDERS: its latest report is always there,
            # however many events other accounts have (see credit_reports).
            credits = await account_credits(self.nc, entry["account"], since)
            samples = [(r.at, r.balance) for r in credits.reports]
            latest = credits.latest
            entry["samples"] = samples
            entry["any_events"] = credits.any_events
            entry["latest"] = latest.balance if latest else None
            entry["latest_at"] = latest.at if latest else None
            entry["low"] = latest is not None and latest.balance < entry["threshold"]
            entry["chart"] = views.credit_chart(samples, float(entry["threshold"]))
            entry["notes"] = credits.notes
            entry["unit"] = credits.unit
        down = None
        return sorted(accounts.values(), key=lambda a: a["sites"][0]["name"]), down

    def settings_summary(self, site: SiteState) -> list[dict[str, Any]]:
        """Every wizard field of a site, read-only (auditors read everything)."""
        flat = _flat(site)
        out = []
        for step in STEPS:
            rows = []
            for f in step.fields:
                value = flat.get(f.path)
                if f.kind == "secret":
                    shown = "set" if value else "not set"
                elif f.kind == "windows":
                    shown = ", ".join(views.describe_window(w) for w in value or []) or "none"
                elif f.kind == "inverted":
                    shown = "yes" if value is False else "no"
                elif f.kind in ("bool",):
                    shown = "yes" if value else "no"
                elif f.kind == "times":
                    shown = ", ".join(value or []) or "none"
                elif f.kind in ("select", "radio"):
                    shown = dict(f.options).get(str(value), str(value))
                else:
                    shown = "" if value is None else views.number(value)
                rows.append({"label": f.label, "value": shown, "path": f.path})
            if rows:
                out.append({"title": step.title, "rows": rows})
        return out

    def warnings_of(self, site: SiteState) -> list[dict[str, str]]:
        return warnings(site.settings)


def client_of(request: Request) -> str | None:
    """The client's address: the TCP peer, or what a trusted proxy forwarded."""
    return request.client.host if request.client else None


def _flat(site: SiteState) -> dict[str, Any]:
    from shared.domain.site_settings import flatten

    return flatten(site.settings.model_dump(mode="json"))


__all__ = ["Console", "Forbidden", "LoginRequired", "PageNotFound", "User"]
