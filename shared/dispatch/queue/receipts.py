"""Delivery receipts from providers, matched to sent messages."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa

from shared.dispatch import schema
from shared.dispatch.queue.core import QueueCore
from shared.events.envelope import EventData
from shared.events.schemas.dispatch import (
    MessageDelivered,
    MessageUndelivered,
)
from shared.privacy.redact import optional, without_addresses


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
        m = self.t.messages
        if message_id is None and provider_message_id is None:
            return None
        # The provider's own words may echo the number or address (docs/privacy.md).
        raw_status, reason = optional(raw_status), without_addresses(reason)
        condition = (
            (m.c.message_id == message_id)
            if message_id
            else (m.c.provider_message_id == provider_message_id)
        )
        conditions = [condition, m.c.state == schema.SENT, m.c.receipt.is_(None)]
        if accounts is not None:
            if not accounts:
                return None
            conditions.append(m.c.account.in_(sorted(accounts)))
        if site_id is not None:
            conditions.append(m.c.site_id == site_id)
        one = sa.select(m.c.site_id, m.c.message_id).where(*conditions).limit(1)
        async with self.db() as session, session.begin():
            result = await session.execute(
                sa.update(m)
                .where(
                    sa.tuple_(m.c.site_id, m.c.message_id).in_(one),
                    m.c.state == schema.SENT,
                    m.c.receipt.is_(None),
                )
                .values(receipt="delivered" if delivered else "undelivered")
                .returning(m.c.message_id, m.c.group_id, m.c.site_id, m.c.provider_message_id)
            )
            row = result.first()
            if row is None:
                return None
            common = self._common(row.message_id, row.group_id, row.site_id)
            data: EventData
            if delivered:
                data = MessageDelivered(
                    **common,
                    provider_message_id=row.provider_message_id,
                    occurred_at=occurred_at,
                    raw_status=raw_status,
                )
            else:
                data = MessageUndelivered(
                    **common,
                    provider_message_id=row.provider_message_id,
                    occurred_at=occurred_at,
                    reason=reason or "undelivered",
                    raw_status=raw_status,
                )
            await self._event(session, row.group_id, row.site_id, row.message_id, "receipt", data)
            return str(row.message_id)
