"""Read-only questions to the gateway's ledger (`sms_messages`) that the engine does not ask."""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.dispatch import schema
from shared.domain.reply_attribution import SentMessage


class Ledger:
    """The SMS ledger, read for lookups, receipts and reply attribution."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], messages: sa.Table) -> None:
        self._sessions = sessions
        self._m = messages

    async def ids_of_others(self, recipient: str, message_id: str, site_id: str) -> list[str]:
        """Provider ids the ledger already gives to other messages to the same number."""
        m = self._m
        async with self._sessions() as session:
            rows = await session.execute(
                sa.select(m.c.provider_message_id).where(
                    m.c.recipient == recipient,
                    sa.not_(sa.and_(m.c.site_id == site_id, m.c.message_id == message_id)),
                    m.c.provider_message_id.is_not(None),
                )
            )
            return [r[0] for r in rows]

    async def state(
        self, message_id: str | None, provider_message_id: str | None, sites: Collection[str]
    ) -> str | None:
        """The state of a message held by one of `sites` (by our id, else the provider's)."""
        m = self._m
        if not sites:
            return None
        if message_id:
            condition = m.c.message_id == message_id
        else:
            condition = m.c.provider_message_id == provider_message_id
        # The id names a row or two; the sites are checked here. Bound as an IN list they
        # were one parameter per site of the account (250 for the load test's accounts),
        # compiled anew for every receipt that came before its send was recorded.
        async with self._sessions() as session:
            rows = await session.execute(sa.select(m.c.site_id, m.c.state).where(condition))
            return next((r.state for r in rows if r.site_id in sites), None)

    async def sent_message(self, message_id: str, group_id: str) -> SentMessage | None:
        """The group's sent message of this id (ids are unique per site only: another group's
        message of the same id is not the one this group's reply answers)."""
        m = self._m
        async with self._sessions() as session:
            row = (
                await session.execute(
                    sa.select(m.c.message_id, m.c.site_id, m.c.account, m.c.recipient).where(
                        m.c.message_id == message_id,
                        m.c.group_id == group_id,
                        m.c.state == schema.SENT,
                    )
                )
            ).first()
        return SentMessage(row.message_id, row.site_id, row.account, row.recipient) if row else None

    async def last_sent(
        self, group_id: str, recipient: str, accounts: Collection[str], sites: Collection[str]
    ) -> SentMessage | None:
        """The latest message the group sent to the number through one of `accounts`, from
        one of `sites`."""
        if not accounts:
            return None
        m = self._m
        async with self._sessions() as session:
            row = (
                await session.execute(
                    sa.select(m.c.message_id, m.c.site_id, m.c.account, m.c.recipient)
                    .where(
                        m.c.group_id == group_id,
                        m.c.recipient == recipient,
                        m.c.state == schema.SENT,
                        m.c.account.in_(sorted(accounts)),
                        m.c.site_id.in_(sorted(sites)),
                    )
                    .order_by(m.c.sent_at.desc())
                    .limit(1)
                )
            ).first()
        return SentMessage(row.message_id, row.site_id, row.account, row.recipient) if row else None
