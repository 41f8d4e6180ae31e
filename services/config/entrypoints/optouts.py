"""Opt-out routes of the JSON API: record that a patient opted out (of one consent category or
of every one) or back in, as staff would in the console.

`POST /api/v1/groups/{group_id}/optouts` and `…/optins`, body `{channel, recipient, category?,
site_id?}`. A group admin may act for the whole group; a site manager names a site they
manage. `category` must be one of the group's consent categories (422 naming the field); an
opt-out of one category ends that category only where the region allows it
(`shared.domain.consent.optout_scope`), every category elsewhere — the answer says which.

The event carries the recipient sealed under their own key and their salted hash
(docs/privacy.md); the answer names them by that hash and a masked form, never in clear.
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from nats.aio.client import Client
from pydantic import BaseModel, ConfigDict, Field

from services.config.domain.aggregates import SiteState
from services.config.entrypoints.access import SiteAccess
from services.config.entrypoints.api import WRITE_ERRORS
from services.config.entrypoints.problems import AuthError, Problem
from services.config.handlers import ConfigHandlers, NotFound
from shared.bus import subjects
from shared.domain.consent import optout_scope
from shared.domain.phone import InvalidPhoneNumber, normalise_phone
from shared.domain.regions import Region
from shared.domain.site_settings import SettingsError, valid_email
from shared.privacy.shown import masked
from shared.suppression import record_opt_in, record_opt_out
from shared.tokens import Principal, TokenRegistry


class OptOutIn(BaseModel):
    """Who opted out (or back in), of what."""

    model_config = ConfigDict(extra="forbid")

    channel: Literal["sms", "email"]
    recipient: str = Field(min_length=1, max_length=320, description="Number or address.")
    category: str | None = Field(
        default=None,
        max_length=32,
        description="One of the group's consent categories; unset = every category.",
    )
    site_id: str | None = Field(
        default=None, max_length=63, description="The patient's site (required for managers)."
    )


def optout_router(handlers: ConfigHandlers, tokens: TokenRegistry, nc: Client) -> APIRouter:
    """`/api/v1/groups/{group_id}/optouts` and `/optins`."""
    router = APIRouter(prefix="/api/v1", tags=["opt-outs"])

    access = SiteAccess(tokens, handlers)
    Caller = Annotated[Principal, Depends(access.principal)]

    def answer(group_id: str, found: dict[str, Any]) -> dict[str, Any]:
        recipient = found["recipient"]
        return {
            **found,
            "recipient": masked(recipient),
            "recipient_tag": handlers.personal.tag(group_id, recipient),
        }

    async def checked(group_id: str, body: OptOutIn, who: Principal) -> dict[str, Any]:
        try:
            subjects.check_token(group_id, "group id")
            group = await handlers.group(group_id)
        except (NotFound, subjects.InvalidToken):
            raise AuthError(404, f"no group {group_id} you can see") from None
        access.group(group_id, who)
        site: SiteState | None = None
        if body.site_id is not None:
            try:
                subjects.check_token(body.site_id, "site id")
                site = await handlers.site(body.site_id)
            except (NotFound, subjects.InvalidToken):
                site = None
            if (
                site is None
                or site.group_id != group_id
                or not who.sees_site(group_id, site.site_id)
            ):
                raise SettingsError({"site_id": f"no site {body.site_id} in this group"})
            if not who.manages_site(group_id, site.site_id):
                raise AuthError(403, f"your role ({who.role}) cannot change opt-outs")
        elif not who.administers_group(group_id):
            raise SettingsError({"site_id": "name the site the patient belongs to"})
        settings = site.settings if site is not None else group.defaults
        categories = settings.consent.categories
        if body.category is not None and body.category not in categories:
            raise SettingsError(
                {"category": f"{body.category!r} is not one of this group's consent categories "
                 f"({', '.join(categories)})"}
            )  # fmt: skip
        region: Region = settings.profile.region
        if body.channel == "sms":
            try:
                recipient = normalise_phone(body.recipient, region)
            except InvalidPhoneNumber as exc:
                raise SettingsError({"recipient": f"not a valid phone number: {exc}"}) from None
        else:
            recipient = body.recipient.strip().lower()
            if not valid_email(recipient):
                raise SettingsError({"recipient": "not a valid email address"})
        return {
            "group_id": group_id,
            "channel": body.channel,
            "recipient": recipient,
            "site_id": site.site_id if site is not None else None,
            "region": region,
        }

    @router.post(
        "/groups/{group_id}/optouts",
        status_code=201,
        summary="Record an opt-out (of one consent category, or of every one)",
        responses={**WRITE_ERRORS, 503: {"model": Problem}},
    )
    async def opt_out(group_id: str, body: OptOutIn, who: Caller) -> dict[str, Any]:
        found = await checked(group_id, body, who)
        scope = optout_scope(found.pop("region"), body.category)
        await record_opt_out(
            nc, how="staff", actor=who.actor, category=scope, personal=handlers.personal, **found
        )
        return {**answer(group_id, found), "category": scope, "covers": scope or "every category"}

    @router.post(
        "/groups/{group_id}/optins",
        status_code=201,
        summary="Record that a patient opted back in (to one category, or to every one)",
        responses={**WRITE_ERRORS, 503: {"model": Problem}},
    )
    async def opt_in(group_id: str, body: OptOutIn, who: Caller) -> dict[str, Any]:
        found = await checked(group_id, body, who)
        found.pop("region")
        await record_opt_in(
            nc,
            how="staff",
            actor=who.actor,
            category=body.category,
            personal=handlers.personal,
            **found,
        )
        covers = body.category or "every category"
        return {**answer(group_id, found), "category": body.category, "covers": covers}

    return router
