"""Replies no single group could be named for: kept for an operator, with the reason.

Such a reply changes nothing (no opt-out, no reply event for any site): guessing would let one
tenant's patient opt out of another tenant's messages. Operators list them with
`stagger replies unrouted` (read straight from the gateway's database, like `stagger audit
verify`: the list names no group, so no group's token could be allowed to read it).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.sms_gateway.adapters import tables
from services.sms_gateway.adapters.providers.base import Inbound
from shared.db.sql import insert_ignoring_duplicates
from shared.domain.reply_attribution import Unrouted


async def record(
    session: AsyncSession, key: str, provider: str, inbound: Inbound, why: Unrouted
) -> bool:
    """Store the reply (with its de-duplication row); False when it was stored already."""
    now = datetime.now(UTC)
    seen = tables.webhook_events
    inserted = await session.execute(
        insert_ignoring_duplicates(
            session, seen, [{"event_key": key, "kind": "unrouted", "received_at": now}]
        ).returning(seen.c.event_key)
    )
    if inserted.first() is None:
        return False
    await session.execute(
        sa.insert(tables.unrouted_replies).values(
            event_key=key,
            provider=provider,
            account_id=inbound.account_id,
            to_number=inbound.to,
            from_number=inbound.from_number,
            body=inbound.body,
            in_reply_to=inbound.in_reply_to,
            received_at=inbound.received_at,
            code=why.code,
            reason=why.reason,
            recorded_at=now,
        )
    )
    return True


async def listing(db: async_sessionmaker[AsyncSession], limit: int = 100) -> list[dict[str, Any]]:
    """The latest unrouted replies, newest first."""
    t = tables.unrouted_replies
    async with db() as session:
        rows = await session.execute(
            sa.select(t).order_by(t.c.recorded_at.desc(), t.c.event_key).limit(limit)
        )
        return [dict(r._mapping) for r in rows]


async def purge_sender(
    db: async_sessionmaker[AsyncSession], is_erased: Callable[[str], bool]
) -> int:
    """Delete the unrouted replies whose sender was erased (they belong to no group, so every
    one is checked against the erased recipient); returns how many went."""
    t = tables.unrouted_replies
    async with db() as session, session.begin():
        rows = (await session.execute(sa.select(t.c.event_key, t.c.from_number))).all()
        gone = [r.event_key for r in rows if is_erased(r.from_number)]
        if gone:
            sqlite = session.get_bind().dialect.name == "sqlite"
            if sqlite:
                # Overwrite the deleted rows' bytes in the file, not just unlink them.
                await session.execute(sa.text("PRAGMA secure_delete=ON"))
            await session.execute(sa.delete(t).where(t.c.event_key.in_(gone)))
            if sqlite:
                await session.execute(sa.text("PRAGMA secure_delete=OFF"))
    return len(gone)
