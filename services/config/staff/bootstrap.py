"""The first group admin of a group, invited by the operator at the server (no email needed).

`stagger admin create` and the first `stagger up` call this: the one-time invitation link is
printed for the operator to follow or pass on, instead of being mailed. Following it asks for
a password and the authenticator app (TOTP), like any invitation.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client

from services.config.staff import invitations
from services.config.staff.accounts import INVITE_PATH
from services.config.staff.events import record
from services.config.staff.rules import StaffRuleError, normalise_email
from services.config.staff.store import StaffStore, UserRow
from shared.events.schemas.staff import StaffInvited


@dataclass(frozen=True)
class AdminInvitation:
    """The invited admin and the link (shown once; only its hash is stored)."""

    user: UserRow
    link: str
    expires_at: datetime


async def invite_admin(
    nc: Client,
    store: StaffStore,
    *,
    group_id: str,
    email: str,
    public_url: str,
    lifetime: timedelta,
    actor: str,
    name: str = "",
) -> AdminInvitation:
    """Invite `email` as a group admin of `group_id`, or give a still-invited one a new link.

    StaffRuleError('email') when the address belongs to an active or disabled user, or to
    another group's user.
    """
    address = normalise_email(email)
    now = datetime.now(UTC)
    secret = invitations.new_secret()
    expires = invitations.expires_at(now, lifetime)
    invitation = {
        "token_hash": invitations.digest(secret),
        "expires_at": expires,
        "created_at": now,
    }
    existing = await store.user_by_email(address)
    if existing is not None:
        if existing.group_id != group_id or existing.status != "invited":
            raise StaffRuleError("email", f"{address} is already a user ({existing.status})")
        await store.add_invitation({**invitation, "user_id": existing.user_id})
        user_id = existing.user_id
    else:
        user_id = secrets.token_hex(8)
        await store.add_user(
            {
                "user_id": user_id,
                "group_id": group_id,
                "email": address,
                "name": name.strip()[:200],
                "role": "group_admin",
                "sites": [],
                "status": "invited",
                "created_at": now,
                "updated_at": now,
            },
            {**invitation, "user_id": user_id},
        )
    await record(
        nc,
        StaffInvited(
            user_id=user_id,
            group_id=group_id,
            email=address,
            role="group_admin",
            expires_at=expires,
            sent_via="none",
        ),
        actor=actor,
        user_id=user_id,
        group_id=group_id,
    )
    user = await store.user(user_id)
    assert user is not None
    return AdminInvitation(user, f"{public_url.rstrip('/')}{INVITE_PATH}{secret}", expires)
