"""Wires the staff parts together for the config service (and for the OIDC sign-in)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.config.adapters import read_model
from services.config.handlers import ConfigHandlers
from services.config.staff.accounts import GroupFacts, StaffAccounts
from services.config.staff.authenticator import Authenticators
from services.config.staff.machine_tokens import MachineTokens
from services.config.staff.mailer import StaffMailer
from services.config.staff.policy import StaffPolicy
from services.config.staff.sessions import StaffSessions
from services.config.staff.signin import LocalSignIn
from services.config.staff.store import StaffStore
from shared.config import StaggerConfig
from shared.net.outbound import OutboundGuard
from shared.secrets import SecretBox
from shared.tokens import TokenRegistry

log = logging.getLogger(__name__)

# "Last used" is a coarse fact: one write per token per minute at most, off the request path.
USAGE_FLUSH_SECONDS = 60.0


class Staff:
    """Staff accounts, local sign-in and console sessions of one config replica."""

    def __init__(
        self,
        settings: StaggerConfig,
        nc: Client,
        db: async_sessionmaker[AsyncSession],
        box: SecretBox,
        handlers: ConfigHandlers,
        guard: OutboundGuard,
    ) -> None:
        self.handlers = handlers
        self.policy = StaffPolicy.from_config(settings)
        self.store = StaffStore(db)
        self.sessions = StaffSessions(nc, self.store, box, self.policy)
        self.signin = LocalSignIn(self.store, box, self.policy)
        self.authenticators = Authenticators(nc, self.store, box)
        mailer = StaffMailer(box, guard, settings.staff_mail_relay, settings.staff_mail_from)
        self.accounts = StaffAccounts(
            nc,
            self.store,
            box,
            self.policy,
            self.sessions,
            mailer,
            self.group_facts,
            settings.public_url,
        )
        self.tokens: MachineTokens | None = None
        self._used: dict[str, datetime] = {}

    async def group_facts(self, group_id: str) -> GroupFacts:
        """The group's name, sites and email account (NotFound if there is no such group)."""
        group = await self.handlers.group(group_id)
        async with self.handlers.db() as session:
            sites = await read_model.sites_of_group(session, group_id)
        return GroupFacts(group.name, tuple(sites), group.defaults.email)

    def watch_tokens(self, tokens: TokenRegistry) -> None:
        """Note every accepted token's use (flushed by `flush_usage_forever`)."""

        def used(token_id: str) -> None:
            self._used[token_id] = datetime.now(UTC)

        tokens.on_use = used
        self.tokens = MachineTokens(self.sessions.nc, tokens, self.store, self.flush_usage)

    async def flush_usage(self) -> None:
        """Write the noted token uses."""
        pending, self._used = self._used, {}
        if pending:
            await self.store.token_used(pending)

    async def flush_usage_forever(self) -> None:
        """Background task: flush token uses every minute."""
        while True:
            await asyncio.sleep(USAGE_FLUSH_SECONDS)
            try:
                await self.flush_usage()
            except Exception:
                log.exception("recording API token use failed; trying again later")
