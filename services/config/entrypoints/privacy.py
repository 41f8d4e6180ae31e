"""`/api/v1/groups/{group_id}/erasures` and the subject-access export (docs/privacy.md)."""

# No `from __future__ import annotations`: FastAPI resolves the local `Caller` alias at runtime.

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from services.config.entrypoints.access import Access
from services.config.entrypoints.api import ERRORS
from services.config.handlers import ConfigHandlers
from shared.events.schemas.privacy import RetentionSet
from shared.privacy.erasure import erase_recipient
from shared.privacy.export import export_recipient
from shared.privacy.retention import policy_of, set_retention
from shared.tokens import Principal, TokenRegistry


class ErasureIn(BaseModel):
    """Whose personal data to erase."""

    model_config = ConfigDict(extra="forbid")

    recipient: str = Field(
        min_length=3,
        max_length=320,
        description="The phone number (E.164, e.g. +61412345678) or email address.",
    )


class RetentionIn(BaseModel):
    """How long a group keeps personal data readable, in days."""

    model_config = ConfigDict(extra="forbid")

    bodies_days: int = Field(default=90, ge=1, le=36_500)
    replies_days: int = Field(default=90, ge=1, le=36_500)
    metadata_days: int | None = Field(default=None, ge=1, le=36_500)


def privacy_router(handlers: ConfigHandlers, tokens: TokenRegistry) -> APIRouter:
    """Erasure of a recipient, for group admins."""
    router = APIRouter(prefix="/api/v1")

    access = Access(tokens)
    Caller = Annotated[Principal, Depends(access.principal)]

    def admin_of(group_id: str, who: Principal) -> None:
        access.admin_of(group_id, who, "only a group admin erases a recipient's data")

    @router.post("/groups/{group_id}/erasures", responses=ERRORS)
    async def erase(group_id: str, body: ErasureIn, who: Caller) -> dict[str, Any]:
        """Delete the recipient's keys (every sealed field of theirs reads "erased") and
        record the erasure; repeating it changes nothing."""
        admin_of(group_id, who)
        done = await erase_recipient(
            handlers.nc, handlers.personal, group_id, body.recipient, who.actor
        )
        return done.as_json()

    @router.get("/groups/{group_id}/recipients/{recipient}/export", responses=ERRORS)
    async def export(group_id: str, recipient: str, who: Caller) -> dict[str, Any]:
        """Everything held about a recipient (subject access), for group admins."""
        admin_of(group_id, who)
        return await export_recipient(handlers.nc, handlers.personal, group_id, recipient)

    @router.get("/groups/{group_id}/retention", responses=ERRORS)
    async def get_retention(group_id: str, who: Caller) -> dict[str, Any]:
        """The group's retention of personal data (defaults if never set)."""
        access.group(group_id, who)
        return (await policy_of(handlers.nc, group_id)).model_dump(mode="json")

    @router.put("/groups/{group_id}/retention", responses=ERRORS)
    async def put_retention(group_id: str, body: RetentionIn, who: Caller) -> dict[str, Any]:
        """Set how many days bodies and reply texts stay readable."""
        admin_of(group_id, who)
        policy = RetentionSet(group_id=group_id, **body.model_dump())
        await set_retention(handlers.nc, policy, who.actor)
        return policy.model_dump(mode="json")

    return router
