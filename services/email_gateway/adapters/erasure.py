"""Clear copies of an erased sender in the email gateway: inbound records and quarantined
attachments (docs/privacy.md). The events on the streams are not touched here."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.email_gateway.adapters import bounce_suppression, tables
from services.email_gateway.adapters.quarantine import Quarantine


async def purge_sender(
    db: async_sessionmaker[AsyncSession],
    quarantine: Quarantine,
    group_id: str,
    is_erased: Callable[[str], bool],
) -> int:
    """Blank the sender and subject of the group's inbound mail from the erased recipient,
    forget its attachments' names and delete their files; returns how many mails it touched.
    The rows stay (they keep a mailbox's UIDs from being read twice)."""
    i, a = tables.inbound, tables.attachments
    async with db() as session, session.begin():
        rows = (
            await session.execute(
                sa.select(i.c.event_id, i.c.sender).where(
                    i.c.group_id == group_id, i.c.sender.is_not(None)
                )
            )
        ).all()
        gone = [r.event_id for r in rows if r.sender and is_erased(r.sender)]
        if not gone:
            return 0
        digests = {
            d
            for d in (
                await session.execute(sa.select(a.c.sha256).where(a.c.inbound_event_id.in_(gone)))
            ).scalars()
            if d
        }
        sqlite = session.get_bind().dialect.name == "sqlite"
        if sqlite:
            # Overwrite the old values' bytes in the file, not just unlink them.
            await session.execute(sa.text("PRAGMA secure_delete=ON"))
        await session.execute(
            sa.update(i).where(i.c.event_id.in_(gone)).values(sender=None, subject=None)
        )
        await session.execute(
            sa.update(a).where(a.c.inbound_event_id.in_(gone)).values(filename=None, stored=False)
        )
        if sqlite:
            await session.execute(sa.text("PRAGMA secure_delete=OFF"))
        # A file is content-addressed: keep it while another mail's attachment still has it.
        still = set(
            (
                await session.execute(
                    sa.select(a.c.sha256).where(a.c.sha256.in_(digests), a.c.stored.is_(True))
                )
            ).scalars()
        )
    for digest in digests - still:
        with contextlib.suppress(FileNotFoundError, ValueError):
            quarantine.path(digest).unlink()
    return len(gone)


async def purge_soft_bounces(
    db: async_sessionmaker[AsyncSession], group_id: str, is_erased: Callable[[str], bool]
) -> int:
    """Forget the erased recipient's soft-bounce count (its row names the address in clear);
    a bounce that suppressed them is on the suppression list by salted hash and stays."""
    t = bounce_suppression.soft_bounces
    async with db() as session, session.begin():
        found = (
            await session.execute(sa.select(t.c.recipient).where(t.c.group_id == group_id))
        ).scalars()
        gone = [r for r in found if is_erased(r)]
        if not gone:
            return 0
        sqlite = session.get_bind().dialect.name == "sqlite"
        if sqlite:
            await session.execute(sa.text("PRAGMA secure_delete=ON"))
        await session.execute(sa.delete(t).where(t.c.group_id == group_id, t.c.recipient.in_(gone)))
        if sqlite:
            await session.execute(sa.text("PRAGMA secure_delete=OFF"))
        return len(gone)
