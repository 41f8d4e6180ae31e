"""JSON API of staff accounts (`/api/v1/groups/{group}/staff`), for a group admin's token or
an integration: list, invite, change a role, disable. Bearer tokens, as every API route.

No `from __future__ import annotations`: FastAPI must see the local `Caller` type itself.
"""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from services.config.entrypoints.access import Access
from services.config.entrypoints.api import ERRORS, WRITE_ERRORS
from services.config.entrypoints.problems import AuthError, problem
from services.config.handlers import NotFound
from services.config.staff.mailer import MailNotSent
from services.config.staff.rules import StaffMember, StaffRuleError
from services.config.staff.service import Staff
from services.config.staff.store import UserRow
from shared.tokens import Principal, TokenRegistry


class StaffOut(BaseModel):
    """A staff user (never a secret)."""

    user_id: str
    email: str
    name: str
    role: str
    sites: list[str]
    status: str
    totp: bool
    created_at: datetime


class InviteIn(BaseModel):
    """Whom to invite, as what."""

    email: str = Field(max_length=320)
    role: str
    sites: list[str] = Field(default_factory=list, max_length=1000)
    name: str = Field(default="", max_length=200)


class RoleIn(BaseModel):
    """A user's new role and sites."""

    role: str
    sites: list[str] = Field(default_factory=list, max_length=1000)


def _out(user: UserRow) -> StaffOut:
    return StaffOut(
        user_id=user.user_id,
        email=user.email,
        name=user.name,
        role=user.role,
        sites=list(user.sites),
        status=user.status,
        totp=user.totp_secret is not None,
        created_at=user.created_at,
    )


def _member(who: Principal) -> StaffMember:
    """The caller as the staff rules see it (a token acts with its role)."""
    return StaffMember(who.user_id or f"token:{who.token_id}", who.group_id, who.role)  # type: ignore[arg-type]


def router(staff: Staff, tokens: TokenRegistry) -> APIRouter:
    """The staff routes."""
    routes = APIRouter(prefix="/api/v1/groups/{group_id}/staff", tags=["staff"])

    access = Access(tokens)
    Caller = Annotated[Principal, Depends(access.principal)]

    def admin_of(group_id: str, who: Principal) -> StaffMember:
        access.admin_of(group_id, who, f"your role ({who.role}) cannot manage staff")
        return _member(who)

    def refused(exc: StaffRuleError | MailNotSent) -> Any:
        if isinstance(exc, MailNotSent):
            return problem(503, "Invitation not sent", f"Nothing was stored: {exc}")
        return problem(422, "Invalid request", exc.message, {exc.field: exc.message})

    @routes.get("", summary="The group's staff", responses=ERRORS)
    async def list_staff(group_id: str, who: Caller) -> list[StaffOut]:
        if who.group_id != group_id or who.role not in ("group_admin", "auditor"):
            raise AuthError(404, f"no group {group_id} you can see")
        return [_out(u) for u in await staff.store.users(group_id)]

    @routes.post(
        "",
        status_code=201,
        summary="Invite someone by email (the link goes by email only)",
        responses={**WRITE_ERRORS, 503: {"description": "The email could not be sent"}},
    )
    async def invite(group_id: str, body: InviteIn, who: Caller) -> Any:
        by = admin_of(group_id, who)
        try:
            user = await staff.accounts.invite(
                group_id, body.email, body.role, body.sites, by=by, actor=who.actor, name=body.name
            )
        except (StaffRuleError, MailNotSent) as exc:
            return refused(exc)
        except NotFound:
            raise AuthError(404, f"no group {group_id} you can see") from None
        return _out(user)

    @routes.put("/{user_id}/role", summary="Change a user's role", responses=WRITE_ERRORS)
    async def change_role(group_id: str, user_id: str, body: RoleIn, who: Caller) -> Any:
        by = admin_of(group_id, who)
        try:
            user = await staff.accounts.change_role(
                by, user_id, body.role, body.sites, actor=who.actor
            )
        except StaffRuleError as exc:
            if exc.field == "user":
                raise AuthError(404, f"no user {user_id} you can see") from None
            return refused(exc)
        return _out(user)

    @routes.post("/{user_id}/disable", summary="Disable a user", responses=WRITE_ERRORS)
    async def disable(group_id: str, user_id: str, who: Caller) -> Any:
        by = admin_of(group_id, who)
        try:
            user = await staff.accounts.disable(by, user_id, actor=who.actor)
        except StaffRuleError as exc:
            if exc.field == "user":
                raise AuthError(404, f"no user {user_id} you can see") from None
            return refused(exc)
        return _out(user)

    return routes
