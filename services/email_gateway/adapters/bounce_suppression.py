"""Bounces that suppress the address: a hard bounce at once, soft bounces at a threshold.

Called inside the transaction that records the bounce (`inbound_record`), so a bounce read
twice — repeated polls, a crash before the cursor moved, several replicas — counts once and
its opt-out is queued once. Only a bounce matched to a message of the mailbox's own group
acts, and on that message's recipient (never the address a report claims, which anyone can
write), so a forged report cannot suppress another group's patient or a stranger.

The opt-out is the ordinary `stagger.optout.opted_out` (`how: bounce`) on the group's email
list (OPTOUTS, through the transactional outbox): every gateway replica follows it and ends
the address's queued messages `suppressed`; the console's opt-out page lists it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.email_gateway.adapters.tables import DISPATCH, metadata
from services.email_gateway.domain.bounces import reaches_threshold, severity
from shared.bus import subjects
from shared.db.sql import insert_ignoring_duplicates
from shared.dispatch.pending_events import add_event, event_id
from shared.events.schemas.inbound_email import Bounce
from shared.events.schemas.optouts import RecipientOptedOut, SoftBounceCounted

SOURCE = "email_gateway"
ACTOR = "service:email_gateway"

soft_bounces = sa.Table(
    "email_soft_bounces",
    metadata,
    sa.Column("group_id", sa.String(63), primary_key=True),
    sa.Column("recipient", sa.String(320), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("last_status", sa.String(32), nullable=True),
    sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
)


async def apply_bounce(
    session: AsyncSession,
    *,
    group_id: str,
    site_id: str,
    recipient: str,
    bounce: Bounce,
    inbound_id: str,
    threshold: int,
    sealed: str | None = None,
) -> str | None:
    """Count or suppress after one recorded bounce; returns "hard", "soft" or None.

    `recipient` is what the lists file the address under: with `sealed` (the address sealed,
    or the hash again where the ledger held only that), its salted hash, which is all the soft
    count and its event name; without, the address (a gateway that seals nothing)."""
    verdict = severity(bounce.action, bounce.status)
    if verdict is None:
        return None
    address = recipient.strip().lower()
    # The ledger files a recipient by its salted hash once personal data is sealed
    # (docs/privacy.md): the bounce names that, and the suppression list keeps it as it is.
    tag = address if sealed is not None or "@" not in address else None
    named = sealed if sealed is not None else address
    if verdict == "soft":
        count = await _count(session, group_id, address, bounce.status)
        await add_event(
            session,
            DISPATCH.pending_events,
            subject=subjects.optouts(group_id, "email"),
            data=SoftBounceCounted(
                group_id=group_id,
                recipient=address,
                count=count,
                threshold=threshold,
                status=bounce.status,
                diagnostic=(bounce.diagnostic or "")[:500] or None,
                site_id=site_id,
            ),
            event_id=event_id(inbound_id, "soft-bounce"),
            actor=ACTOR,
            source=SOURCE,
            group_id=group_id,
            site_id=site_id,
            event_subject=address,
        )
        # Exactly at the threshold: later soft bounces (mail already queued at a provider)
        # do not record the same opt-out again.
        if count != threshold or not reaches_threshold(count, threshold):
            return verdict
    await add_event(
        session,
        DISPATCH.pending_events,
        subject=subjects.optouts(group_id, "email"),
        data=RecipientOptedOut(
            group_id=group_id,
            channel="email",
            recipient=named,
            recipient_tag=tag,
            how="bounce",
            keyword=f"{verdict} bounce {bounce.status or bounce.action}"[:64],
            site_id=site_id,
        ),
        event_id=event_id(inbound_id, "bounce-optout"),
        actor=ACTOR,
        source=SOURCE,
        group_id=group_id,
        site_id=site_id,
        event_subject=address,
    )
    return verdict


async def _count(session: AsyncSession, group_id: str, address: str, status: str | None) -> int:
    t = soft_bounces
    now = datetime.now(UTC)
    await session.execute(
        insert_ignoring_duplicates(
            session,
            t,
            [
                {
                    "group_id": group_id,
                    "recipient": address,
                    "count": 0,
                    "last_status": None,
                    "last_at": now,
                }
            ],
        )
    )
    await session.execute(
        sa.update(t)
        .where(t.c.group_id == group_id, t.c.recipient == address)
        .values(count=t.c.count + 1, last_status=(status or "")[:32] or None, last_at=now)
    )
    found = await session.execute(
        sa.select(t.c.count).where(t.c.group_id == group_id, t.c.recipient == address)
    )
    return int(found.scalar_one())
