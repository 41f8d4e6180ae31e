"""Attachments kept in quarantine: the operator's release command (recorded once) and the
lookup behind `GET /attachments/{attachment_id}` (released ones only, for staff)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.email_gateway.adapters import tables
from services.email_gateway.adapters.inbound_record import SOURCE
from services.email_gateway.adapters.quarantine import Quarantine
from shared.bus import subjects
from shared.dispatch.commands import CommandRefused
from shared.dispatch.pending_events import add_event, event_id
from shared.events.envelope import Envelope
from shared.events.schemas.control import AttachmentReleaseRequested
from shared.events.schemas.inbound_email import AttachmentReleased
from shared.tokens import Principal

log = logging.getLogger(__name__)


async def release_attachment(db: async_sessionmaker[AsyncSession], event: Envelope) -> None:
    """The email gateway's own operator command: release a quarantined attachment."""
    data = event.data
    assert isinstance(data, AttachmentReleaseRequested)
    try:
        subjects.check_token(data.site_id, "site id")
    except subjects.InvalidToken as exc:
        raise CommandRefused(str(exc)) from exc
    outcome = await release(
        db,
        group_id=data.group_id,
        site_id=data.site_id,
        attachment=data.attachment_id,
        actor=event.actor,
        reason=data.reason,
    )
    log.info(
        "attachment release",
        extra={"attachment": data.attachment_id, "site": data.site_id, "outcome": outcome},
    )


async def release(
    db: async_sessionmaker[AsyncSession],
    *,
    group_id: str,
    site_id: str,
    attachment: str,
    actor: str,
    reason: str,
) -> str:
    """Release one quarantined attachment to staff; returns what happened (for the log).

    Released once: the row's `released_at` is a compare-and-set and the event id derives from
    the attachment, so a repeated or concurrent release changes nothing.
    """
    t = tables.attachments
    now = datetime.now(UTC)
    async with db() as session, session.begin():
        updated = await session.execute(
            sa.update(t)
            .where(
                t.c.attachment_id == attachment,
                t.c.site_id == site_id,
                t.c.group_id == group_id,
                t.c.stored.is_(True),
                t.c.released_at.is_(None),
            )
            .values(released_at=now, released_by=actor[:200])
            .returning(t.c.inbound_event_id, t.c.sha256, t.c.filename, t.c.sniffed_type, t.c.size)
        )
        row = updated.first()
        if row is None:
            found = (
                await session.execute(
                    sa.select(t.c.stored, t.c.released_at, t.c.site_id).where(
                        t.c.attachment_id == attachment
                    )
                )
            ).first()
            if found is None or found.site_id != site_id:
                return "unknown attachment"
            return "already released" if found.released_at is not None else "not stored"
        await add_event(
            session,
            tables.DISPATCH.pending_events,
            subject=subjects.inbound_email(site_id),
            data=AttachmentReleased(
                group_id=group_id,
                site_id=site_id,
                attachment_id=attachment,
                inbound_event_id=row.inbound_event_id,
                sha256=row.sha256,
                filename=row.filename,
                sniffed_type=row.sniffed_type,
                size=row.size,
                automatic=False,
                reason=reason,
            ),
            event_id=event_id(attachment, "released"),
            actor=actor,
            source=SOURCE,
            group_id=group_id,
            site_id=site_id,
            event_subject=attachment,
        )
    return "released"


@dataclass(frozen=True)
class Download:
    """A released attachment's bytes, or why the caller gets none (`status`, `detail`)."""

    status: int
    detail: str = ""
    data: bytes = b""
    filename: str = "attachment"
    sniffed_type: str = ""


Opener = Callable[[str, str | None], Awaitable[str | None]]
"""Opens a sealed field of a group (`PersonalData.open`)."""


async def released(
    db: async_sessionmaker[AsyncSession],
    quarantine: Quarantine,
    who: Principal,
    attachment: str,
    opener: Opener | None = None,
) -> Download:
    """A released attachment the caller may see: 404 if none, 403 while quarantined, 410 if
    it was never kept. Its name is stored sealed and opened with `opener`."""
    t = tables.attachments
    async with db() as session:
        row = (await session.execute(sa.select(t).where(t.c.attachment_id == attachment))).first()
    if row is None or not who.sees_site(row.group_id, row.site_id):
        return Download(404, "no such attachment you can see")
    if row.released_at is None:
        return Download(403, "quarantined: release it first (an explicit, recorded action)")
    if not row.stored or row.sha256 is None:
        return Download(410, "this attachment was not kept")
    data = await asyncio.to_thread(quarantine.read, row.sha256)
    name = row.filename
    if opener is not None:
        name = await opener(row.group_id, name)
    return Download(200, data=data, filename=name or "attachment", sniffed_type=row.sniffed_type)
