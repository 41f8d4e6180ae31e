"""Finishing a single sign-on: from the provider's code to a Stagger staff user.

Throttled like the local sign-in (the same failure table and limits): per client address
and, once the provider has named the email, per account. An invited user's first sign-in
activates them (`StaffAccounts.activate_external`: their identity provider, not Stagger, holds
their password and second factor).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client

from services.config.sso.client import OidcClient, Pending, SsoError
from services.config.sso.store import SsoStore
from services.config.staff.policy import StaffPolicy
from services.config.staff.store import StaffStore, UserRow
from services.config.staff.throttle import longest_wait, retry_after
from shared.domain.oidc import SignInRefused, StaffCandidate, admit, identity

log = logging.getLogger(__name__)


class SsoThrottled(Exception):
    """Too many failed sign-ins from this address or for this account."""

    def __init__(self, wait: timedelta) -> None:
        super().__init__(f"try again in {wait}")
        self.wait = wait


class SsoSignIn:
    """The callback's use case."""

    def __init__(
        self,
        nc: Client,
        providers: SsoStore,
        client: OidcClient,
        staff: StaffStore,
        policy: StaffPolicy,
        activate: Callable[[UserRow], Awaitable[UserRow]],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.nc = nc
        self.activate = activate
        self.providers = providers
        self.client = client
        self.staff = staff
        self.policy = policy
        self.clock = clock

    async def _check_throttle(self, keys: list[tuple[str, str]]) -> None:
        now = self.clock()
        limits = {"account": self.policy.account, "client": self.policy.client}
        window = max(limit.window for limit in limits.values())
        rows = await self.staff.failures(keys, now - window)
        wait = longest_wait(
            retry_after([at for s, k, at in rows if (s, k) == key], now, limits[key[0]])
            for key in keys
        )
        if wait is not None:
            raise SsoThrottled(wait)

    async def throttle(self, client: str | None) -> None:
        """SsoThrottled when this address has failed too often (checked before redirecting)."""
        if client:
            await self._check_throttle([("client", client[:320])])

    async def complete(
        self, pending: Pending, code: str, redirect_uri: str, client: str | None
    ) -> UserRow:
        """The active staff user the provider vouched for; SignInRefused, SsoError or
        SsoThrottled otherwise (each failure counts towards the throttle)."""
        keys = [("client", client[:320])] if client else []
        await self._check_throttle(keys)
        provider = await self.providers.get(pending.group_id)
        if provider is None:
            raise SsoError(f"single sign-on is not set up for group {pending.group_id}")
        email: str | None = None
        try:
            claims = await self.client.finish(provider, pending, code, redirect_uri)
            email = claims.get("email") if isinstance(claims.get("email"), str) else None
            who = identity(claims, provider)
            email = who.email
            keys.append(("account", who.email[:320]))
            await self._check_throttle(keys)
            user = await self.staff.user_by_email(who.email)
            candidates = [StaffCandidate(user.user_id, user.group_id, user.status)] if user else []
            admit(provider.group_id, candidates)
        except (SignInRefused, SsoError) as exc:
            if keys:
                await self.staff.add_failures(keys, self.clock())
            if isinstance(exc, SignInRefused):
                await self.providers.refused(provider.group_id, email, exc.reason)
            log.warning(
                "single sign-on refused",
                extra={"group_id": provider.group_id, "reason": str(exc), "client": client},
            )
            raise
        assert user is not None
        if user.status == "invited":
            user = await self.activate(user)
        if user.status != "active":  # disabled between the check and the activation
            await self.providers.refused(provider.group_id, user.email, "disabled")
            raise SignInRefused("disabled", "the user is disabled")
        if keys and len(keys) > 1:
            await self.staff.clear_failures("account", keys[-1][1])
        return user
