"""Recording one inbound message once: its row, quarantined attachments, event and cursor.

Both receivers (IMAP polling in `receiving`, Microsoft Graph in `graph.receiver`) hand each new
message here. The row in `email_inbound`, its attachments, the `stagger.inbound.email_received`
event (transactional outbox) and the mailbox cursor move in one transaction, so repeated polls,
crashes and replicas record it once.

- Attachments go to the quarantine (content-addressed, 0600, never opened), typed by sniffing.
  With "open attachments directly" on they are released at intake — still with an event.
- A delivery-status notification marks the original message undelivered (receipt) — only a
  message of the mailbox's own group — and a hard bounce suppresses that message's recipient,
  soft ones at a threshold (`bounce_suppression`).
- A reply is matched to the patient message it answers by In-Reply-To/References (our
  Message-IDs), else to the last message sent to its sender.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.email_gateway.adapters import tables
from services.email_gateway.adapters.bounce_suppression import apply_bounce
from services.email_gateway.adapters.inbound import ParsedInbound
from services.email_gateway.adapters.quarantine import Quarantine, sniff
from services.email_gateway.config import EmailGatewayConfig
from shared.bus import subjects
from shared.db.sql import insert_ignoring_duplicates, upsert
from shared.dispatch import schema
from shared.dispatch.pending_events import add_event, event_id
from shared.dispatch.queue import MessageQueue
from shared.events.schemas.inbound_email import (
    AttachmentReleased,
    InboundAttachment,
    InboundEmailReceived,
)
from shared.privacy.codec import ADDRESS
from shared.privacy.inbound_email import seal_received
from shared.sites import Site

SOURCE = "email_gateway"
ACTOR = "service:email_gateway"


def attachment_id(inbound_id: str, index: int) -> str:
    """The id of an inbound message's n-th attachment."""
    return event_id(inbound_id, f"attachment:{index}")


async def advance_cursor(
    session: AsyncSession, site_id: str, mailbox: str, uidvalidity: int, uid: int
) -> None:
    """Move the (site, mailbox, UIDVALIDITY) cursor up to `uid`, never back."""
    t = tables.cursors
    now = datetime.now(UTC)
    await session.execute(
        insert_ignoring_duplicates(
            session,
            t,
            [
                {
                    "site_id": site_id,
                    "mailbox": mailbox,
                    "uidvalidity": uidvalidity,
                    "last_uid": uid,
                    "updated_at": now,
                }
            ],
        )
    )
    await session.execute(
        sa.update(t)
        .where(
            t.c.site_id == site_id,
            t.c.mailbox == mailbox,
            t.c.uidvalidity == uidvalidity,
            t.c.last_uid < uid,
        )
        .values(last_uid=uid, updated_at=now)
    )


class InboundRecorder:
    """Records parsed inbound messages, matched to what they answer, exactly once."""

    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        queue: MessageQueue,
        quarantine: Quarantine,
        settings: EmailGatewayConfig,
    ) -> None:
        self.db = db
        self.queue = queue
        self.quarantine = quarantine
        self.settings = settings

    async def known(self, eid: str) -> bool:
        """True if this inbound event id was recorded already."""
        t = tables.inbound
        async with self.db() as session:
            found = await session.execute(sa.select(t.c.event_id).where(t.c.event_id == eid))
            return found.first() is not None

    async def _match(self, site: Site, parsed: ParsedInbound) -> tuple[str | None, str | None]:
        m = tables.DISPATCH.messages
        async with self.db() as session:
            for ids, how in (
                (parsed.in_reply_to, "in_reply_to"),
                (parsed.references, "references"),
            ):
                if not ids:
                    continue
                row = (
                    await session.execute(
                        sa.select(m.c.message_id).where(
                            m.c.provider_message_id.in_(ids), m.c.group_id == site.group_id
                        )
                    )
                ).first()
                if row is not None:
                    return row.message_id, how
            if parsed.sender:
                # A sealed ledger files the recipient by its salted hash (docs/privacy.md).
                found = [parsed.sender, parsed.sender.lower()]
                if self.queue.personal is not None:
                    found.append(self.queue.personal.tag(site.group_id, parsed.sender))
                candidates = list(dict.fromkeys(found))
                row = (
                    await session.execute(
                        sa.select(m.c.message_id)
                        .where(
                            m.c.group_id == site.group_id,
                            m.c.recipient.in_(candidates),
                            m.c.state == schema.SENT,
                        )
                        .order_by(m.c.sent_at.desc())
                        .limit(1)
                    )
                ).first()
                if row is not None:
                    return row.message_id, "sender"
        return None, None

    async def record(
        self,
        site: Site,
        account: str,
        mailbox: str,
        uidvalidity: int,
        uid: int,
        eid: str,
        size: int,
        internal_date: datetime,
        parsed: ParsedInbound,
        truncated: bool,
    ) -> bool:
        """Record one parsed message with its attachments and event; True if it was new."""
        kind: Literal["message", "bounce"] = "bounce" if parsed.bounce is not None else "message"
        matched, matched_by = None, None
        bounce = parsed.bounce
        bounced_to: str | None = None
        if bounce is not None:
            for candidate in parsed.bounce_candidates:
                hit = await self._bounce_receipt(site.group_id, candidate, bounce, internal_date)
                if hit is not None:
                    (matched, bounced_to), matched_by = hit, "bounce"
                    bounce = bounce.model_copy(update={"original_message_id": candidate})
                    break
        if matched is None:
            matched, matched_by = await self._match(site, parsed)

        cap = self.settings.attachment_max_bytes
        stored: list[InboundAttachment] = []
        for index, item in enumerate(parsed.attachments):
            aid = attachment_id(eid, index)
            size_of = len(item.data)
            kind_of = sniff(item.data)
            if size_of > cap:
                stored.append(
                    InboundAttachment(
                        attachment_id=aid,
                        filename=item.filename,
                        declared_type=item.declared_type,
                        sniffed_type=kind_of,
                        size=size_of,
                        stored=False,
                        reason=f"larger than the {cap}-byte quarantine limit; not kept",
                    )
                )
                continue
            digest = await asyncio.to_thread(self.quarantine.store, item.data)
            stored.append(
                InboundAttachment(
                    attachment_id=aid,
                    filename=item.filename,
                    declared_type=item.declared_type,
                    sniffed_type=kind_of,
                    size=size_of,
                    sha256=digest,
                    stored=True,
                )
            )
        data = InboundEmailReceived(
            group_id=site.group_id,
            site_id=site.site_id,
            account=account,
            mailbox=mailbox,
            uidvalidity=uidvalidity,
            uid=uid,
            kind=kind,
            sender=parsed.sender,
            sender_name=parsed.sender_name,
            subject=parsed.subject,
            size=size,
            internet_message_id=parsed.internet_message_id,
            in_reply_to=next(iter(parsed.in_reply_to), None),
            received_at=internal_date,
            matched_message_id=matched,
            matched_by=matched_by,  # type: ignore[arg-type]
            bounce=bounce,
            attachments=stored,
            truncated=truncated,
        )
        # Sealed before anything is stored (docs/privacy.md): the table, the event and the
        # automatic releases carry the sealed values, the table the sender's salted hash.
        sender_column = (parsed.sender or "")[:320] or None
        bounced: tuple[str, str | None] | None = None
        if bounced_to is not None:
            bounced = (bounced_to, None)
        personal = self.queue.personal
        if personal is not None:
            data = await seal_received(personal, data)
            stored = list(data.attachments)
            sender_column = data.sender_tag
            if bounced_to is not None:
                bounced = await self._bounced(site.group_id, bounced_to)
        now = datetime.now(UTC)
        release_all = site.settings.email.open_attachments_directly
        async with self.db() as session, session.begin():
            inserted = await session.execute(
                insert_ignoring_duplicates(
                    session,
                    tables.inbound,
                    [
                        {
                            "event_id": eid,
                            "group_id": site.group_id,
                            "site_id": site.site_id,
                            "account": account,
                            "mailbox": mailbox,
                            "uidvalidity": uidvalidity,
                            "uid": uid,
                            "kind": kind,
                            "sender": sender_column,
                            "subject": data.subject,
                            "internet_message_id": (parsed.internet_message_id or "")[:998] or None,
                            "matched_message_id": matched,
                            "received_at": internal_date,
                            "recorded_at": now,
                        }
                    ],
                ).returning(tables.inbound.c.event_id)
            )
            if inserted.first() is None:
                return False  # another replica (or an earlier poll) recorded it
            if stored:
                await upsert(
                    session,
                    tables.attachments,
                    ["attachment_id"],
                    [
                        {
                            "attachment_id": a.attachment_id,
                            "inbound_event_id": eid,
                            "group_id": site.group_id,
                            "site_id": site.site_id,
                            "filename": a.filename,
                            "declared_type": a.declared_type[:255],
                            "sniffed_type": a.sniffed_type,
                            "size": a.size,
                            "sha256": a.sha256,
                            "stored": a.stored,
                            "released_at": now if (release_all and a.stored) else None,
                            "released_by": ACTOR if (release_all and a.stored) else None,
                        }
                        for a in stored
                    ],
                    update=["inbound_event_id"],
                )
            await add_event(
                session,
                tables.DISPATCH.pending_events,
                subject=subjects.inbound_email(site.site_id),
                data=data,
                event_id=eid,
                actor=ACTOR,
                source=SOURCE,
                group_id=site.group_id,
                site_id=site.site_id,
                event_subject=parsed.internet_message_id or eid,
            )
            if release_all:
                for a in stored:
                    if not a.stored or a.sha256 is None:
                        continue
                    await add_event(
                        session,
                        tables.DISPATCH.pending_events,
                        subject=subjects.inbound_email(site.site_id),
                        data=AttachmentReleased(
                            group_id=site.group_id,
                            site_id=site.site_id,
                            attachment_id=a.attachment_id,
                            inbound_event_id=eid,
                            sha256=a.sha256,
                            filename=a.filename,
                            sniffed_type=a.sniffed_type,
                            size=a.size,
                            automatic=True,
                            reason="the site opens email attachments directly",
                        ),
                        event_id=event_id(a.attachment_id, "released"),
                        actor=ACTOR,
                        source=SOURCE,
                        group_id=site.group_id,
                        site_id=site.site_id,
                        event_subject=a.attachment_id,
                    )
            if bounce is not None and bounced is not None:
                await apply_bounce(
                    session,
                    group_id=site.group_id,
                    site_id=site.site_id,
                    recipient=bounced[0],
                    sealed=bounced[1],
                    bounce=bounce,
                    inbound_id=eid,
                    threshold=self.settings.soft_bounce_threshold,
                )
            await advance_cursor(session, site.site_id, mailbox, uidvalidity, uid)
        return True

    async def _bounced(self, group_id: str, recipient: str) -> tuple[str, str | None]:
        """The bounced recipient as the opt-out names it: (salted hash, sealed address). A
        ledger row sealed already holds only the hash, which stands for both."""
        assert self.queue.personal is not None
        personal = self.queue.personal
        if "@" not in recipient:
            return recipient, recipient
        tag = personal.tag(group_id, recipient)
        return tag, await personal.seal(group_id, recipient, ADDRESS, recipient)

    async def _bounce_receipt(
        self, group_id: str, candidate: str, bounce: Any, occurred_at: datetime
    ) -> tuple[str, str] | None:
        """Apply a bounce to the message it names; returns that message's id and recipient
        if it is ours.

        Only a message of the mailbox's own group: a report that names another group's
        Message-ID (forged, or misdirected) is recorded unmatched and changes nothing there.
        """
        m = tables.DISPATCH.messages
        async with self.db() as session:
            row = (
                await session.execute(
                    sa.select(m.c.site_id, m.c.message_id, m.c.recipient).where(
                        m.c.provider_message_id == candidate, m.c.group_id == group_id
                    )
                )
            ).first()
        if row is None:
            return None
        if bounce.action in ("failed", "delivered"):
            await self.queue.receipt(
                message_id=str(row.message_id),
                site_id=str(row.site_id),
                delivered=bounce.action == "delivered",
                occurred_at=occurred_at,
                raw_status=f"{bounce.action} {bounce.status or ''}".strip(),
                # The queue takes addresses out of the diagnostic (shared.privacy.redact).
                reason=bounce.diagnostic or f"bounced ({bounce.status or 'no status'})",
            )
        return str(row.message_id), str(row.recipient)
