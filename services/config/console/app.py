"""The web console: server-rendered pages under `/console`, served by the config service.

Every page is plain HTML from Jinja2 templates and works without JavaScript; `static/console.js`
only swaps parts of a page after a form post (sessions, the forecast, the provider test).
Writes go through the same code as the JSON API: `ConfigHandlers` in-process, or the API's own
routes called in-process (the provider test), never a copy of their rules.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from nats.aio.client import Client
from starlette.datastructures import FormData
from starlette.staticfiles import StaticFiles

from services.config.adapters import read_model
from services.config.adapters import replies as replies_model
from services.config.console import views
from services.config.console.audit_client import AuditClient
from services.config.console.common import (
    CSP,
    HERE,
    PARTIAL_HEADER,
    PREFIX,
    CsrfFailed,
    Forbidden,
    LoginRequired,
    PageNotFound,
    User,
    client_of,
    web_origin,
)
from services.config.console.drafts import DraftStore
from services.config.console.forms import STEPS
from services.config.console.operations import ConsoleOperations
from services.config.console.session import (
    COOKIE,
    COOKIE_PATH,
    CSRF_FIELD,
    Session,
    SessionCodec,
)
from services.config.domain.aggregates import SiteState
from services.config.handlers import ConfigHandlers, NotFound
from shared.bus import subjects
from shared.config import StaggerConfig
from shared.domain.numbers import for_field, for_people
from shared.domain.site_settings import warnings
from shared.suppression import SuppressionList
from shared.tokens import Principal, TokenRegistry

if TYPE_CHECKING:
    from services.config.staff.service import Staff
    from services.config.staff.store import UserRow

log = logging.getLogger(__name__)


class Console(ConsoleOperations):
    """Routes, templates, sessions and drafts of the console."""

    def __init__(
        self,
        settings: StaggerConfig,
        nc: Client,
        handlers: ConfigHandlers,
        tokens: TokenRegistry,
        staff: Staff,
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.handlers = handlers
        self.tokens = tokens
        self.staff = staff
        self.codec = SessionCodec.from_config(settings)
        # Behind a TLS proxy the public URL, not the hop from the proxy, says what the browser
        # sees: its origin is the only one a form may come from, and https makes the cookie
        # Secure even when the proxy speaks plain http to us.
        self.public_origin = web_origin(settings.public_url)
        self.public_https = self.public_origin.startswith("https://")
        self.drafts = DraftStore()
        self.audit = AuditClient(settings.audit_api_url())
        # Filed by salted hash: opt-outs are recorded sealed (docs/privacy.md).
        self.suppression = SuppressionList(nc, handlers.personal.tag)
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
            number=for_people,  # every number shown to people (shared.domain.numbers)
            field_number=for_field,  # a number as a form field's value: no separators
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
        from services.config.console import (
            batches,
            dashboard,
            email_test_page,
            optouts_pages,
            pages,
            replies_pages,
            sso_pages,
            staff_pages,
            wizard,
        )

        sub = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        sub.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
        self._install_session(sub)
        self._install_errors(sub)
        staff_pages.install(self, sub)
        sso_pages.install(self, sub)
        pages.install(self, sub)
        optouts_pages.install(self, sub)
        wizard.install(self, sub)
        batches.install(self, sub)
        dashboard.install(self, sub)
        replies_pages.install(self, sub)
        email_test_page.install(self, sub)
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
                    # Lax: the browser still sends it when an identity provider redirects back
                    # (a top-level GET); every state-changing form also carries a CSRF token.
                    samesite="lax",
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
        if not session.signed_in:
            raise LoginRequired()
        # The server's record decides: signed out elsewhere, expired, or the user disabled
        # (the cookie still opens, but its session id is no longer live).
        signed = await self.staff.sessions.authenticate(session.sid)
        if signed is None:
            session.rotate(False)
            raise LoginRequired()
        if request.method == "GET":
            # Every page's main nav shows the unread replies; only pages (GETs) need it.
            request.state.unread_replies = await self.unread_replies(signed.principal)
        return User(session, signed.principal, signed.token, signed.user)

    async def sign_in(self, request: Request, account: UserRow, method: str) -> None:
        """Start a signed-in session (new id and CSRF token) for a user who proved who they
        are by `method` ("password_totp", "password" or "oidc")."""
        session = self.session_of(request)
        if session.signed_in:  # signing in over a signed-in session: end the old one
            await self.staff.sessions.end(session.sid)
        self.drafts.drop(session.sid)
        session.rotate(True)
        await self.staff.sessions.start(
            session.sid, account, method=method, client=client_of(request)
        )
        log.info(
            "console sign-in",
            extra={
                "user_id": account.user_id,
                "group_id": account.group_id,
                "client": client_of(request),
            },
        )

    async def sign_out(self, request: Request) -> None:
        """End this session on every replica, whichever copy of its cookie comes next."""
        session = self.session_of(request)
        if session.signed_in:
            await self.staff.sessions.end(session.sid)
            log.info("console sign-out", extra={"client": client_of(request)})
        self.drafts.drop(session.sid)
        session.rotate(False)

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

    async def unread_replies(self, who: Principal) -> dict[str, int]:
        """Unread replies of each site the caller may see (as the Replies page counts them)."""
        sites = await self.visible_sites(who)
        async with self.handlers.db() as session:
            return await replies_model.unread_counts(session, [s["site_id"] for s in sites])

    def page(
        self, request: Request, template: str, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """Render a full page (the nav's unread count is the one `user` found)."""
        session = self.session_of(request)
        unread = getattr(request.state, "unread_replies", None) or {}
        html = self.env.get_template(template).render(
            request_path=request.url.path,
            csrf=session.csrf,
            nav_unread=sum(unread.values()),
            **context,
        )
        return HTMLResponse(html, status_code=status)

    @staticmethod
    def partial(request: Request) -> bool:
        """True when console.js asked for parts of the page."""
        return bool(request.headers.get(PARTIAL_HEADER))

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
                    shown = "" if value is None else views.show_value(value, f.path)
                rows.append({"label": f.label, "value": shown, "path": f.path})
            if rows:
                out.append({"title": step.title, "rows": rows})
        return out

    def warnings_of(self, site: SiteState) -> list[dict[str, str]]:
        return warnings(site.settings)


def _flat(site: SiteState) -> dict[str, Any]:
    from shared.domain.site_settings import flatten

    return flatten(site.settings.model_dump(mode="json"))


__all__ = ["Console", "Forbidden", "LoginRequired", "PageNotFound", "User"]
