"""Server-side console sessions: which browser is signed in as which staff user.

The browser's cookie carries a random session id (inside the console's sealed cookie); the
database keeps only its SHA-256, the user, an expiry and a short-lived API token minted for
the session (sealed), through which the console calls the API and the audit service with the
user's role. Ending a session deletes its row and revokes its token, so a copied cookie dies
with it on every replica at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.client import Client

from services.config.staff.events import record
from services.config.staff.invitations import digest
from services.config.staff.policy import StaffPolicy
from services.config.staff.store import SessionRow, StaffStore, UserRow
from shared.events.schemas.staff import StaffSessionsEnded, StaffSignedIn
from shared.secrets import SecretBox
from shared.tokens import Principal, issue_token, revoke_token

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignedIn:
    """An authenticated console request: who, what they may do, and the session's token."""

    user: UserRow
    principal: Principal
    token: str
    session: SessionRow


class StaffSessions:
    """Start, look up and end console sessions."""

    def __init__(
        self,
        nc: Client,
        store: StaffStore,
        box: SecretBox,
        policy: StaffPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.nc = nc
        self.store = store
        self.box = box
        self.policy = policy
        self.clock = clock

    async def start(
        self, sid: str, user: UserRow, *, method: str, client: str | None = None
    ) -> None:
        """Record `sid` as signed in as `user` (who must be active), and say so in the trail.

        `method` is how they proved who they are: "password_totp", "password" or "oidc".
        """
        if user.status != "active":
            raise ValueError(f"user {user.user_id} is {user.status}, not active")
        now = self.clock()
        expires = now + self.policy.session
        token_id, token = await issue_token(
            self.nc,
            group_id=user.group_id,
            role=user.role,  # type: ignore[arg-type]
            sites=user.sites,
            label=f"console session of {user.email}",
            actor=f"user:{user.user_id}",
            expires_at=expires,
            user_id=user.user_id,
        )
        await self.store.add_session(
            {
                "session_hash": digest(sid),
                "user_id": user.user_id,
                "group_id": user.group_id,
                "method": method,
                "client": (client or "")[:64] or None,
                "api_token_id": token_id,
                "api_token": self.box.seal(token),
                "created_at": now,
                "expires_at": expires,
            }
        )
        await record(
            self.nc,
            StaffSignedIn(
                user_id=user.user_id,
                group_id=user.group_id,
                method=method,  # type: ignore[arg-type]
                client=client,
            ),
            actor=f"user:{user.user_id}",
            user_id=user.user_id,
            group_id=user.group_id,
        )

    async def authenticate(self, sid: str) -> SignedIn | None:
        """The signed-in user of a session id, or None (unknown, expired, user not active)."""
        row = await self.store.session(digest(sid))
        if row is None:
            return None
        if self.clock() >= row.expires_at:
            await self.end(sid)
            return None
        user = await self.store.user(row.user_id)
        if user is None or user.status != "active":
            await self.end(sid)
            return None
        principal = Principal(
            row.api_token_id,
            user.group_id,
            user.role,  # type: ignore[arg-type]
            frozenset(user.sites),
            user_id=user.user_id,
        )
        return SignedIn(user, principal, self.box.open(row.api_token), row)

    async def end(self, sid: str) -> None:
        """Sign one session out (its token is revoked too)."""
        token_id = await self.store.end_session(digest(sid))
        if token_id is not None:
            await self._revoke(token_id, "signed out")

    async def end_all(self, user: UserRow, *, reason: str, actor: str) -> int:
        """End every session of a user at once; returns how many there were."""
        token_ids = await self.store.end_sessions_of(user.user_id)
        for token_id in token_ids:
            await self._revoke(token_id, reason.replace("_", " "))
        await record(
            self.nc,
            StaffSessionsEnded(
                user_id=user.user_id,
                group_id=user.group_id,
                reason=reason,  # type: ignore[arg-type]
                sessions=len(token_ids),
            ),
            actor=actor,
            user_id=user.user_id,
            group_id=user.group_id,
        )
        return len(token_ids)

    async def _revoke(self, token_id: str, reason: str) -> None:
        try:
            await revoke_token(self.nc, token_id, reason=reason, actor="config")
        except KeyError:
            log.warning("session token not found to revoke", extra={"token_id": token_id})
