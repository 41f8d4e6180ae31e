"""Ledger rows stored before personal fields were sealed (docs/privacy.md, "Data written
before this change"): their payload sealed under the recipient's keys, their `recipient`
replaced by its tag, the address taken out of their `last_error`.

Run by each gateway once at start (in the background) and by `stagger privacy seal-stored`.
Not an Alembic migration: sealing needs the key bucket on NATS and the service key, which a
migration does not have (the keyless part, the errors, is migration sms_0013's).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.events.schemas.messages import MessageAccepted
from shared.privacy.codec import PersonalData

log = logging.getLogger(__name__)

RECIPIENT = "<recipient>"
"""What an address in an error reads once taken out (as `QueueCore` writes new errors)."""


def clear_rows(messages: sa.Table) -> sa.ColumnElement[bool]:
    """Rows still filed by an address: a sealed row files its recipient by a hex tag."""
    m = messages
    return sa.or_(m.c.recipient.like("%@%"), m.c.recipient.like("+%"))


async def clear_count(db: async_sessionmaker[AsyncSession], messages: sa.Table) -> int:
    """How many rows still hold an address."""
    async with db() as session:
        found = await session.scalar(
            sa.select(sa.func.count()).select_from(messages).where(clear_rows(messages))
        )
    return int(found or 0)


async def seal_stored(
    db: async_sessionmaker[AsyncSession],
    messages: sa.Table,
    personal: PersonalData,
    chunk: int = 200,
) -> int:
    """Seal every row still holding an address, in chunks; returns how many. Idempotent.

    On SQLite the old bytes are overwritten (`secure_delete`) and the write-ahead log is
    truncated at the end, so the file keeps no copy of the addresses and bodies.
    """
    m = messages
    columns = (m.c.site_id, m.c.message_id, m.c.recipient, m.c.payload)
    sealed = 0
    sqlite = False
    while True:
        async with db() as session:
            rows = (
                await session.execute(sa.select(*columns).where(clear_rows(m)).limit(chunk))
            ).all()
        if not rows:
            break
        for row in rows:
            message = await personal.seal_message(MessageAccepted.model_validate(row.payload))
            async with db() as session, session.begin():
                sqlite = session.get_bind().dialect.name == "sqlite"
                if sqlite:
                    await session.execute(sa.text("PRAGMA secure_delete=ON"))
                await session.execute(
                    sa.update(m)
                    .where(
                        m.c.site_id == row.site_id,
                        m.c.message_id == row.message_id,
                        m.c.recipient == row.recipient,  # not sealed meanwhile by another run
                    )
                    .values(
                        payload=message.model_dump(mode="json"),
                        recipient=message.recipient_tag or message.to,
                        # In SQL: an error the gateway writes meanwhile is kept, not undone.
                        last_error=sa.func.replace(m.c.last_error, row.recipient, RECIPIENT),
                    )
                )
                if sqlite:
                    await session.execute(sa.text("PRAGMA secure_delete=OFF"))
            sealed += 1
    if sealed and sqlite:
        await _truncate_log(db)
    return sealed


async def _truncate_log(db: async_sessionmaker[AsyncSession]) -> None:
    # The log still holds the pages as they were before; a reader busy elsewhere can keep
    # the checkpoint from finishing, which the next one (SQLite's own) completes.
    async with db() as session:
        busy = (await session.execute(sa.text("PRAGMA wal_checkpoint(TRUNCATE)"))).first()
    if busy is not None and busy[0]:
        log.warning("the SQLite log could not be truncated now; a later checkpoint will")
