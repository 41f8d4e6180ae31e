"""Inbound mail recorded in clear before sealing (docs/privacy.md): sealed once, in the
background, as the ledger's rows are (`seal_stored`). The row's sender becomes the sender's
salted hash, its subject and its attachments' names are sealed under the sender's keys; on
SQLite the old values' bytes are overwritten (`secure_delete`). The events already on the
stream stay as they were and are opened tolerantly."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.email_gateway.adapters import tables
from shared.privacy.cipher import is_personal
from shared.privacy.codec import BODY, PersonalData


async def seal_clear_inbound(
    db: async_sessionmaker[AsyncSession], personal: PersonalData, chunk: int = 200
) -> int:
    """Seal every inbound row still naming its sender by address; returns how many."""
    i, a = tables.inbound, tables.attachments
    sealed = 0
    while True:
        async with db() as session:
            rows = (
                await session.execute(
                    sa.select(i.c.event_id, i.c.group_id, i.c.sender, i.c.subject, i.c.received_at)
                    .where(i.c.sender.like("%@%"))
                    .limit(chunk)
                )
            ).all()
        if not rows:
            return sealed
        for row in rows:
            async with db() as session:
                names = (
                    await session.execute(
                        sa.select(a.c.attachment_id, a.c.filename).where(
                            a.c.inbound_event_id == row.event_id
                        )
                    )
                ).all()
            # Sealed before the transaction: the keys come from NATS.
            subject = await _body(personal, row, row.subject)
            filenames = {n.attachment_id: await _body(personal, row, n.filename) for n in names}
            async with db() as session, session.begin():
                sqlite = session.get_bind().dialect.name == "sqlite"
                if sqlite:
                    await session.execute(sa.text("PRAGMA secure_delete=ON"))
                await session.execute(
                    sa.update(i)
                    .where(i.c.event_id == row.event_id)
                    .values(sender=personal.tag(row.group_id, row.sender), subject=subject)
                )
                for attachment, name in filenames.items():
                    await session.execute(
                        sa.update(a).where(a.c.attachment_id == attachment).values(filename=name)
                    )
                if sqlite:
                    await session.execute(sa.text("PRAGMA secure_delete=OFF"))
            sealed += 1


async def _body(personal: PersonalData, row: Any, value: str | None) -> str | None:
    """`value` sealed under the row's sender's body key of the day it was received."""
    if not value or is_personal(value):
        return value
    return await personal.seal(row.group_id, row.sender, BODY, value, row.received_at)
