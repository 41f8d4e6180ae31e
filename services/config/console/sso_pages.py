"""Console routes of single sign-on: start at the group's provider, come back signed in."""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from services.config.console import sso_admin_page as admin_page
from services.config.console.sso_admin_page import public_base
from services.config.console.sso_flow_cookie import COOKIE, COOKIE_PATH, MAX_AGE, FlowCodec
from services.config.sso.client import OidcClient, SsoError
from services.config.sso.signin import SsoSignIn, SsoThrottled
from services.config.sso.store import SsoStore
from shared.bus import subjects
from shared.domain.oidc import SignInRefused
from shared.net.outbound import OutboundGuard

if TYPE_CHECKING:
    from services.config.console.app import Console

log = logging.getLogger(__name__)

REFUSED = (
    "Your identity provider signed you in, but that account may not use this group's "
    "console. Ask your group admin for an invitation."
)
FAILED = "The sign-in with your identity provider did not complete. Try again."


def install(console: Console, app: FastAPI) -> None:
    """Register /sso (start) and /sso/callback (finish) on the console app."""
    from services.config.console.common import PREFIX, client_of, safe_next

    box = console.staff.sessions.box
    providers = SsoStore(console.nc, box)
    client = OidcClient(box, OutboundGuard.parse(console.settings.outbound_allow))
    codec = FlowCodec.from_config(console.settings)
    signin = SsoSignIn(
        console.nc,
        providers,
        client,
        console.staff.store,
        console.staff.policy,
        console.staff.accounts.activate_external,
    )

    admin_page.install(console, app, providers)

    def callback_url(request: Request) -> str:
        return public_base(console, request) + f"{PREFIX}/sso/callback"

    def refuse(request: Request, message: str, status: int, group: str = "") -> Response:
        response = console.page(
            request,
            "login.html",
            status=status,
            next=PREFIX + "/",
            who=None,
            error=message,
            sso_group=group,
        )
        response.delete_cookie(COOKIE, path=COOKIE_PATH)
        return response

    @app.get("/sso")
    async def start(request: Request, group: str = "", next: str | None = None) -> Response:
        group = group.strip().lower()
        try:
            subjects.check_token(group, "group")
            provider = await providers.get(group)
        except subjects.InvalidToken:
            provider = None
        if provider is None:
            return refuse(request, f"Single sign-on is not set up for group {group!r}.", 404, group)
        try:
            await signin.throttle(client_of(request))
            url, pending = await client.begin(provider, callback_url(request), safe_next(next))
        except SsoThrottled:
            return refuse(request, "Too many failed sign-ins. Try again later.", 429, group)
        except SsoError as exc:
            log.warning("single sign-on start failed", extra={"group_id": group, "error": str(exc)})
            return refuse(request, FAILED, 502, group)
        # A page that moves on by itself, not a redirect: the console's CSP (form-action
        # 'self') stops a form's redirect to another origin, and the form started this.
        response = console.page(request, "sso_continue.html", url=url, who=None)
        response.set_cookie(
            COOKIE,
            codec.dump(pending),
            max_age=MAX_AGE,
            path=COOKIE_PATH,
            httponly=True,
            samesite="lax",  # the provider's redirect back is a cross-site top-level GET
            secure=console.public_https or request.url.scheme == "https",
        )
        return response

    @app.get("/sso/callback")
    async def finish(
        request: Request, state: str = "", code: str = "", error: str = ""
    ) -> Response:
        pending = codec.load(request.cookies.get(COOKIE))
        if pending is None or not state or not hmac.compare_digest(pending.state, state):
            return refuse(request, "This sign-in expired or did not start here. Try again.", 400)
        if error or not code:
            # The person cancelled at the provider, or it refused them itself.
            log.info("single sign-on cancelled", extra={"group_id": pending.group_id})
            return refuse(request, FAILED, 401, pending.group_id)
        try:
            user = await signin.complete(
                pending, code[:4096], callback_url(request), client_of(request)
            )
        except SsoThrottled:
            return refuse(request, "Too many failed sign-ins. Try again later.", 429)
        except SignInRefused:
            return refuse(request, REFUSED, 403, pending.group_id)
        except SsoError:
            return refuse(request, FAILED, 502, pending.group_id)
        await console.sign_in(request, user, "oidc")
        response = RedirectResponse(safe_next(pending.next), status_code=303)
        response.delete_cookie(COOKIE, path=COOKIE_PATH)
        return response
