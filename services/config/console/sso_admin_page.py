"""The group admin's single sign-on page: set, change or turn off the group's provider."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from services.config.sso.store import SsoStore
from shared.domain.oidc import PRESETS, OidcConfigError

if TYPE_CHECKING:
    from services.config.console.app import Console
    from services.config.console.common import User

FIELDS = ("preset", "tenant", "discovery_url", "client_id", "allowed_domain")


def public_base(console: Console, request: Request) -> str:
    """Where browsers reach the console: the https public URL, or (plain http, a development
    or direct deployment) whatever address this request came to, as `origin_ok` accepts."""
    if console.public_https:
        return console.public_origin
    return f"{request.url.scheme}://{request.url.netloc}"


def install(console: Console, app: FastAPI, providers: SsoStore) -> None:
    """Register /sso/settings (group admins only)."""
    from services.config.console.common import PREFIX, Forbidden

    async def admin(request: Request) -> User:
        user = await console.user(request)
        if user.who.role != "group_admin":
            raise Forbidden("Only a group admin sets up single sign-on.")
        return user

    async def settings_page(
        request: Request, user: User, *, status: int = 200, **extra: object
    ) -> Response:
        group_id = user.who.group_id
        current = await providers.get(group_id)
        return console.page(
            request,
            "sso_settings.html",
            status=status,
            who=user.who,
            nav="staff",
            current=current,
            presets=PRESETS,
            callback=f"{public_base(console, request)}{PREFIX}/sso/callback",
            sign_in_link=f"{public_base(console, request)}{PREFIX}/sso?group={group_id}",
            **extra,
        )

    @app.get("/sso/settings")
    async def show(request: Request, done: str | None = None) -> Response:
        user = await admin(request)
        return await settings_page(request, user, notice=done)

    @app.post("/sso/settings")
    async def save(request: Request) -> Response:
        user = await admin(request)
        form = await console.form(request)
        values = {f: str(form.get(f) or "").strip()[:500] for f in FIELDS}
        try:
            await providers.configure(
                user.who.group_id,
                preset=values["preset"],
                client_id=values["client_id"],
                client_secret=str(form.get("client_secret") or "")[:2000],
                allowed_domain=values["allowed_domain"] or None,
                tenant=values["tenant"] or None,
                discovery_url=values["discovery_url"] or None,
                actor=user.who.actor,
            )
        except OidcConfigError as exc:
            return await settings_page(
                request, user, status=422, error=exc.message, error_field=exc.field, form=values
            )
        return RedirectResponse(
            f"{PREFIX}/sso/settings?done=Single+sign-on+is+set+up.", status_code=303
        )

    @app.post("/sso/settings/off")
    async def off(request: Request) -> Response:
        user = await admin(request)
        await console.form(request)
        await providers.remove(user.who.group_id, actor=user.who.actor)
        return RedirectResponse(
            f"{PREFIX}/sso/settings?done=Single+sign-on+is+off.", status_code=303
        )
