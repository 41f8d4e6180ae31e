"""Console pages of a group admin: the group's staff (invite, change role, disable) and its
API tokens (create, list, revoke)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from services.config.staff.machine_tokens import TOKEN_ROLES
from services.config.staff.mailer import MailNotSent
from services.config.staff.rules import STAFF_ROLES, StaffMember, StaffRuleError

if TYPE_CHECKING:
    from services.config.console.app import Console, User

log = logging.getLogger(__name__)


def _label(role: str) -> str:
    return role.replace("_", " ").capitalize()


def install(console: Console, app: FastAPI) -> None:
    """Register the staff and token pages."""
    from services.config.console.app import PREFIX, Forbidden

    staff = console.staff

    async def admin(request: Request) -> tuple[User, StaffMember]:
        user = await console.user(request)
        member = user.account.member
        if member.role != "group_admin":
            raise Forbidden("Only a group admin manages staff and API tokens.")
        return user, member

    async def staff_page(
        request: Request, user: User, *, status: int = 200, **extra: Any
    ) -> Response:
        group_id = user.who.group_id
        return console.page(
            request,
            "staff.html",
            status=status,
            who=user.who,
            nav="staff",
            users=await staff.store.users(group_id),
            counts=await staff.store.session_counts(group_id, staff.sessions.clock()),
            sites=await console.visible_sites(user.who),
            roles=[(r, _label(r)) for r in STAFF_ROLES],
            form=extra.pop("form", {}),
            **extra,
        )

    @app.get("/staff")
    async def staff_list(request: Request, done: str | None = None) -> Response:
        user, _ = await admin(request)
        return await staff_page(request, user, notice=done)

    @app.post("/staff/invite")
    async def invite(request: Request) -> Response:
        user, member = await admin(request)
        form = await console.form(request)
        values = {
            "email": str(form.get("email") or "")[:320],
            "name": str(form.get("name") or "")[:200],
            "role": str(form.get("role") or ""),
        }
        try:
            invited = await staff.accounts.invite(
                member.group_id,
                values["email"],
                values["role"],
                [str(s) for s in form.getlist("sites")],
                by=member,
                actor=user.who.actor,
                name=values["name"],
            )
        except (StaffRuleError, MailNotSent) as exc:
            message = exc.message if isinstance(exc, StaffRuleError) else str(exc)
            return await staff_page(request, user, status=422, error=message, form=values)
        done = urlencode({"done": f"Invitation sent to {invited.email}."})
        return RedirectResponse(f"{PREFIX}/staff?{done}", status_code=303)

    @app.post("/staff/{user_id}/role")
    async def change_role(request: Request, user_id: str) -> Response:
        user, member = await admin(request)
        form = await console.form(request)
        try:
            changed = await staff.accounts.change_role(
                member,
                user_id,
                str(form.get("role") or ""),
                [str(s) for s in form.getlist("sites")],
                actor=user.who.actor,
            )
        except StaffRuleError as exc:
            return await staff_page(request, user, status=422, error=exc.message)
        if changed.user_id == member.user_id:
            # Their own sessions ended with the change: sign in again under the new role.
            user.session.rotate(False)
            return RedirectResponse(f"{PREFIX}/login", status_code=303)
        done = urlencode({"done": f"{changed.email} is now {_label(changed.role).lower()}."})
        return RedirectResponse(f"{PREFIX}/staff?{done}", status_code=303)

    @app.post("/staff/{user_id}/disable")
    async def disable(request: Request, user_id: str) -> Response:
        user, member = await admin(request)
        form = await console.form(request)
        try:
            gone = await staff.accounts.disable(
                member, user_id, actor=user.who.actor, reason=str(form.get("reason") or "")
            )
        except StaffRuleError as exc:
            return await staff_page(request, user, status=422, error=exc.message)
        done = urlencode({"done": f"{gone.email} is disabled and signed out."})
        return RedirectResponse(f"{PREFIX}/staff?{done}", status_code=303)

    # --- API tokens ----------------------------------------------------------------------

    async def tokens_page(
        request: Request, user: User, *, status: int = 200, **extra: Any
    ) -> Response:
        assert staff.tokens is not None
        return console.page(
            request,
            "tokens.html",
            status=status,
            who=user.who,
            nav="tokens",
            tokens=await staff.tokens.listing(user.who.group_id),
            sites=await console.visible_sites(user.who),
            roles=[(r, _label(r)) for r in TOKEN_ROLES],
            **extra,
        )

    @app.get("/tokens")
    async def tokens(request: Request, done: str | None = None) -> Response:
        user, _ = await admin(request)
        return await tokens_page(request, user, notice=done)

    @app.post("/tokens")
    async def create_token(request: Request) -> Response:
        user, member = await admin(request)
        form = await console.form(request)
        assert staff.tokens is not None
        group_sites = [s["site_id"] for s in await console.visible_sites(user.who)]
        try:
            token = await staff.tokens.create(
                member,
                role=str(form.get("role") or ""),
                sites=[str(s) for s in form.getlist("sites")],
                group_sites=group_sites,
                expires_in=str(form.get("expires_in") or ""),
                label=str(form.get("label") or ""),
                actor=user.who.actor,
            )
        except StaffRuleError as exc:
            return await tokens_page(request, user, status=422, error=exc.message)
        # Shown in this response only (never in a URL, a log or a later page).
        return await tokens_page(request, user, created=token)

    @app.post("/tokens/{token_id}/revoke")
    async def revoke(request: Request, token_id: str) -> Response:
        user, member = await admin(request)
        await console.form(request)
        assert staff.tokens is not None
        try:
            await staff.tokens.revoke(member, token_id, actor=user.who.actor)
        except StaffRuleError as exc:
            return await tokens_page(request, user, status=422, error=exc.message)
        done = urlencode({"done": f"Token {token_id} is revoked."})
        return RedirectResponse(f"{PREFIX}/tokens?{done}", status_code=303)
