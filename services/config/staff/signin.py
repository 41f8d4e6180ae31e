"""Local sign-in: email, password and (when enrolled or required) a TOTP code, throttled per
account and per client address."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.config.staff import credentials
from services.config.staff.policy import StaffPolicy
from services.config.staff.rules import needs_totp
from services.config.staff.store import StaffStore, UserRow
from services.config.staff.throttle import longest_wait, retry_after
from shared.secrets import SecretBox

log = logging.getLogger(__name__)

WRONG = "That email, password or code is not right."


class SignInRefused(Exception):
    """A sign-in that did not succeed; `reason` is wrong, throttled or disabled."""

    def __init__(self, reason: str, message: str, wait: timedelta | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.wait = wait


@dataclass(frozen=True)
class Attempt:
    """What a person typed on the sign-in form, and where from."""

    email: str
    password: str
    code: str
    client: str | None


class LocalSignIn:
    """Checks an attempt; records failures for the throttle."""

    def __init__(
        self,
        store: StaffStore,
        box: SecretBox,
        policy: StaffPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.box = box
        self.policy = policy
        self.clock = clock

    def _keys(self, attempt: Attempt) -> list[tuple[str, str]]:
        keys = [("account", attempt.email.strip().lower()[:320])]
        if attempt.client:
            keys.append(("client", attempt.client[:320]))
        return keys

    async def wait(self, attempt: Attempt) -> timedelta | None:
        """How long this account or address must wait before trying again (None: not at all)."""
        now = self.clock()
        window = max(self.policy.account.window, self.policy.client.window)
        rows = await self.store.failures(self._keys(attempt), now - window)
        limits = {"account": self.policy.account, "client": self.policy.client}
        waits = []
        for scope, key in self._keys(attempt):
            times = [at for s, k, at in rows if s == scope and k == key]
            waits.append(retry_after(times, now, limits[scope]))
        return longest_wait(waits)

    async def check(self, attempt: Attempt) -> UserRow:
        """The user the attempt proves to be; SignInRefused otherwise."""
        wait = await self.wait(attempt)
        if wait is not None:
            minutes = max(1, int(wait.total_seconds() + 59) // 60)
            raise SignInRefused(
                "throttled",
                f"Too many failed sign-ins. Try again in {minutes} minute"
                f"{'s' if minutes != 1 else ''}.",
                wait,
            )
        user = await self.store.user_by_email(attempt.email.strip().lower())
        ok = credentials.verify_password(user.password_hash if user else None, attempt.password)
        step: int | None = None
        if ok and user is not None:
            if user.totp_secret:
                secret = self.box.open(user.totp_secret)
                step = credentials.totp_step(
                    secret, attempt.code, self.clock(), user.totp_last_step
                )
                ok = step is not None
            elif needs_totp(user.role):
                ok = False  # a group admin without a second factor cannot sign in
        if not ok or user is None:
            await self.store.add_failures(self._keys(attempt), self.clock())
            log.warning("console sign-in refused", extra={"client": attempt.client})
            raise SignInRefused("wrong", WRONG)
        if user.status != "active":
            # Told only after the password and code were right, so it reveals nothing more.
            raise SignInRefused("disabled", "This account is disabled; ask your group admin.")
        await self.store.clear_failures("account", attempt.email.strip().lower()[:320])
        changes: dict[str, object] = {}
        if step is not None:
            changes["totp_last_step"] = step  # each code works once
        if user.password_hash and credentials.needs_rehash(user.password_hash):
            changes["password_hash"] = credentials.hash_password(attempt.password)
        if changes:
            await self.store.update_user(user.user_id, **changes)
        return user
