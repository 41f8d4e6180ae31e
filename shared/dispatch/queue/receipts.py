"""Delivery receipts from providers, matched to sent messages."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.dispatch import schema
from shared.dispatch.queue.core import QueueCore
from shared.events.envelope import EventData
from shared.events.schemas.dispatch import (
    MessageDelivered,
    MessageUndelivered,
)
from shared.privacy.redact import optional, without_addresses


@dataclass(frozen=True)
class ReceiptIn:
    """One receipt as a provider reported it (see `Receipts.receipt` for the fields)."""

    delivered: bool
    occurred_at: datetime
    message_id: str | None = None
    provider_message_id: str | None = None
    raw_status: str | None = None
    reason: str = ""
    accounts: Collection[str] | None = None
    site_id: str | None = None

    @property
    def matchable(self) -> bool:
        """False when it can match no message (no id at all, or no account it came through)."""
        if self.message_id is None and self.provider_message_id is None:
            return False
        return self.accounts is None or bool(self.accounts)


class Receipts(QueueCore):
    """Records delivered and undelivered receipts."""

    async def receipt(
        self,
        *,
        message_id: str | None = None,
        provider_message_id: str | None = None,
        delivered: bool,
        occurred_at: datetime,
        raw_status: str | None = None,
        reason: str = "",
        accounts: Collection[str] | None = None,
        site_id: str | None = None,
    ) -> str | None:
        """Record a delivery receipt for a sent message (first receipt wins); returns the
        message id it matched.

        `accounts`: the account(s) the receipt came through; only a message sent through one
        of them matches, so one tenant's receipt never settles another's message. `site_id`:
        the site of the message (email bounces, found in the mailbox that sent it). At most
        one message is settled, even where two sites' messages share an id."""
        item = ReceiptIn(
            delivered=delivered,
            occurred_at=occurred_at,
            message_id=message_id,
            provider_message_id=provider_message_id,
            raw_status=raw_status,
            reason=reason,
            accounts=accounts,
            site_id=site_id,
        )
        if not item.matchable:
            return None
        async with self.db() as session, session.begin():
            return await self.settle_receipt(session, item)

    async def settle_receipt(self, session: AsyncSession, item: ReceiptIn) -> str | None:
        """`receipt` inside the caller's transaction (several receipts may share one)."""
        if not item.matchable:
            return None
        # The provider's own words may echo the number or address (docs/privacy.md).
        raw_status, reason = optional(item.raw_status), without_addresses(item.reason)
        m = self.t.messages
        condition = (
            (m.c.message_id == item.message_id)
            if item.message_id
            else (m.c.provider_message_id == item.provider_message_id)
        )
        conditions = [condition, m.c.state == schema.SENT, m.c.receipt.is_(None)]
        if item.accounts is not None:
            conditions.append(m.c.account.in_(sorted(item.accounts)))
        if item.site_id is not None:
            conditions.append(m.c.site_id == item.site_id)
        one = sa.select(m.c.site_id, m.c.message_id).where(*conditions).limit(1)
        result = await session.execute(
            sa.update(m)
            .where(
                sa.tuple_(m.c.site_id, m.c.message_id).in_(one),
                m.c.state == schema.SENT,
                m.c.receipt.is_(None),
            )
            .values(receipt="delivered" if item.delivered else "undelivered")
            .returning(m.c.message_id, m.c.group_id, m.c.site_id, m.c.provider_message_id)
        )
        row = result.first()
        if row is None:
            return None
        common = self._common(row.message_id, row.group_id, row.site_id)
        data: EventData
        if item.delivered:
            data = MessageDelivered(
                **common,
                provider_message_id=row.provider_message_id,
                occurred_at=item.occurred_at,
                raw_status=raw_status,
            )
        else:
            data = MessageUndelivered(
                **common,
                provider_message_id=row.provider_message_id,
                occurred_at=item.occurred_at,
                reason=reason or "undelivered",
                raw_status=raw_status,
            )
        await self._event(session, row.group_id, row.site_id, row.message_id, "receipt", data)
        return str(row.message_id)
