"""A signed-in user sets up (or replaces) their authenticator app."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from nats.aio.client import Client

from services.config.staff import credentials
from services.config.staff.events import record
from services.config.staff.rules import StaffRuleError
from services.config.staff.store import StaffStore, UserRow
from shared.events.schemas.staff import StaffTotpEnrolled
from shared.secrets import SecretBox


class Authenticators:
    """Offer a new TOTP key, switch to it once a code from it is right."""

    def __init__(
        self,
        nc: Client,
        store: StaffStore,
        box: SecretBox,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.nc = nc
        self.store = store
        self.box = box
        self.clock = clock

    async def offer(self, user: UserRow) -> str:
        """A new key for the user (kept pending, sealed, until confirmed)."""
        if user.totp_pending is not None:
            return self.box.open(user.totp_pending)
        pending = credentials.new_totp_secret()
        await self.store.update_user(user.user_id, totp_pending=self.box.seal(pending))
        return pending

    async def confirm(self, user: UserRow, code: str) -> None:
        """Switch to the pending key (StaffRuleError('code') if the code is not from it)."""
        fresh = await self.store.user(user.user_id)
        if fresh is None or fresh.totp_pending is None:
            raise StaffRuleError("code", "start the set-up again")
        pending = self.box.open(fresh.totp_pending)
        step = credentials.totp_step(pending, code, self.clock(), None)
        if step is None:
            raise StaffRuleError("code", "that code is not the one your app shows now")
        await self.store.update_user(
            user.user_id, totp_secret=fresh.totp_pending, totp_pending=None, totp_last_step=step
        )
        await record(
            self.nc,
            StaffTotpEnrolled(user_id=user.user_id, group_id=user.group_id),
            actor=f"user:{user.user_id}",
            user_id=user.user_id,
            group_id=user.group_id,
        )
