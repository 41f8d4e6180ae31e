"""Staff actions on replies and inbound email: mark a reply handled, answer it with a one-off
SMS, release a quarantined attachment.

- Handled and answered are events on INBOUND (`replies.<site>`, next to the reply itself), so
  the audit trail holds them and the replies read model (`adapters/replies`) follows them.
- An answer is an ordinary submission (`handlers.submission.submit`): one SMS from the same
  site to the number that wrote, stored in the outbox, paced by the site's sending rules,
  suppressed if the number opted out, and audited like any other message. Its idempotency key
  is derived from the reply and the text, so a double click sends it once.
- A release is the email gateway's own command (`control.email.release_attachment.<site>`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.config.adapters import replies as replies_model
from services.config.adapters.batches import BatchStore
from services.config.domain.aggregates import SiteState
from services.config.handlers import ConfigHandlers, submission
from shared.bus import subjects
from shared.bus.topology import CONTROL, INBOUND
from shared.dispatch.pending_events import event_id
from shared.domain.site_settings import SettingsError
from shared.events.envelope import EventData, make_event
from shared.events.schemas.control import AttachmentReleaseRequested
from shared.events.schemas.replies import ReplyAnswered, ReplyHandled
from shared.eventstore import EventStore
from shared.privacy.cipher import ERASED
from shared.privacy.codec import ADDRESS, BODY, PersonalData

SOURCE = "config"
MAX_ANSWER = 1600
"""Longest answer accepted (ten SMS parts); the submission checks the site's own limits too."""


class ReplyNotFound(Exception):
    """No such reply at this site."""


class ReplyDesk:
    """What staff do with a reply or an inbound email (API and console share it)."""

    def __init__(
        self,
        nc: Client,
        db: async_sessionmaker[AsyncSession],
        msg_id_key: bytes,
        batches: BatchStore | None = None,
        personal: PersonalData | None = None,
    ) -> None:
        self._nc = nc
        self._db = db
        self._msg_id_key = msg_id_key
        self._batches = batches
        # Replies carry the patient's number and text sealed (docs/privacy.md): opened to
        # answer, and the answer's own event seals them again.
        self._personal = personal

    @classmethod
    def of(cls, nc: Client, handlers: ConfigHandlers) -> ReplyDesk:
        """The desk over the config service's database and outbox key."""
        key = handlers.box.derive_key(submission.MSG_ID_PURPOSE)
        return cls(nc, handlers.db, key, BatchStore(handlers.db), handlers.personal)

    async def reply(self, site: SiteState, reply_id: str) -> dict[str, Any]:
        """One reply of the site (raises `ReplyNotFound`)."""
        async with self._db() as session:
            found = await replies_model.get_reply(session, site.site_id, reply_id[:64])
        if found is None:
            raise ReplyNotFound(reply_id)
        return found

    async def mark_handled(
        self, site: SiteState, reply_id: str, actor: str, note: str = ""
    ) -> dict[str, Any]:
        """Record that staff handled the reply; returns the reply as the read model has it."""
        await self.reply(site, reply_id)
        data = ReplyHandled(
            group_id=site.group_id, site_id=site.site_id, reply_id=reply_id, note=note[:500]
        )
        await self._append_reply_event(site, data, actor, event_id(reply_id, f"handled:{actor}"))
        return await self._until(site, reply_id, lambda r: r["handled_at"] is not None)

    async def answer(
        self, site: SiteState, reply_id: str, body: str, actor: str
    ) -> tuple[dict[str, Any], submission.Accepted]:
        """Send the patient a one-off SMS from the site through the normal pipeline."""
        found = await self.reply(site, reply_id)
        text = body.strip()
        if not text:
            raise SettingsError({"body": "write the answer"})
        if len(text) > MAX_ANSWER:
            raise SettingsError({"body": f"at most {MAX_ANSWER} characters"})
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        number = found["from_number"]
        if self._personal is not None:
            number = await self._personal.open(site.group_id, number)
        if not number or number == ERASED:
            raise SettingsError({"reply_id": "the patient's number was erased"})
        body_in = submission.SubmissionIn(
            channel="sms",
            messages=[
                submission.MessageIn(
                    to=number,
                    body=text,
                    category="manual",
                    client_reference=f"reply:{reply_id}"[:200],
                    idempotency_key=f"reply:{reply_id}:{digest}",
                )
            ],
        )
        batch_id = submission.batch_of(site, body_in)

        async def record(accepted: list[submission.Accepted]) -> None:
            if self._batches is not None:
                await self._batches.record(
                    batch_id=batch_id,
                    group_id=site.group_id,
                    site_id=site.site_id,
                    channel="sms",
                    message_ids=[a.message_id for a in accepted],
                    actor=actor,
                )

        accepted = await submission.submit(
            self._nc,
            site,
            body_in,
            actor,
            msg_id_key=self._msg_id_key,
            batch_id=batch_id,
            before_publish=record,
            personal=self._personal,
        )
        sent = accepted[0]
        shown_to, shown_body = number, text
        if self._personal is not None:
            shown_to = await self._personal.seal(site.group_id, number, ADDRESS, number)
            shown_body = await self._personal.seal(site.group_id, number, BODY, text)
        data = ReplyAnswered(
            group_id=site.group_id,
            site_id=site.site_id,
            reply_id=reply_id,
            message_id=sent.message_id,
            to=shown_to,
            body=shown_body,
        )
        # One event per answer message: a repeated click (same text) is the same message and
        # the same event id, which the stream de-duplicates.
        await self._append_reply_event(site, data, actor, event_id(reply_id, sent.message_id))
        shown = await self._until(
            site, reply_id, lambda r: r["last_answer_message_id"] == sent.message_id
        )
        return shown, sent

    async def release_attachment(
        self, site: SiteState, attachment_id: str, actor: str, reason: str = ""
    ) -> str:
        """Ask the email gateway to release a quarantined attachment; returns the event id."""
        data = AttachmentReleaseRequested(
            group_id=site.group_id,
            site_id=site.site_id,
            attachment_id=attachment_id,
            reason=reason[:500],
        )
        event = make_event(
            data,
            source=SOURCE,
            actor=actor,
            subject=attachment_id,
            group_id=site.group_id,
            site_id=site.site_id,
        )
        await EventStore(self._nc, CONTROL).append(
            subjects.gateway_control("email", "release_attachment", site.site_id), event
        )
        return event.id

    async def _append_reply_event(
        self, site: SiteState, data: EventData, actor: str, eid: str
    ) -> None:
        event = make_event(
            data,
            source=SOURCE,
            actor=actor,
            subject=getattr(data, "reply_id", None),
            group_id=site.group_id,
            site_id=site.site_id,
            event_id=eid,
        )
        await EventStore(self._nc, INBOUND).append(subjects.replies(site.site_id), event)

    async def _until(
        self,
        site: SiteState,
        reply_id: str,
        done: Callable[[dict[str, Any]], bool],
        patience: float = 5.0,
    ) -> dict[str, Any]:
        """The reply once the read model shows our own write (bounded: the projection is
        asynchronous, and an answer should not look lost on the page that follows)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        while True:
            current = await self.reply(site, reply_id)
            if done(current) or loop.time() >= deadline:
                if self._personal is not None:
                    await opened(self._personal, site.group_id, [current])
                return current
            await asyncio.sleep(0.05)


SEARCH_WINDOW = 3000
"""How many of the newest replies a keyword search reads: texts are sealed (docs/privacy.md),
so they are matched once opened, not by the database."""


async def search(
    db: async_sessionmaker[AsyncSession],
    personal: PersonalData,
    group_id: str,
    site_ids: list[str],
    *,
    keyword: str | None = None,
    status: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """The group's replies of `site_ids`, newest first and opened for staff; `keyword` matches
    the text or the keyword understood (case-insensitive)."""
    async with db() as session:
        rows = await replies_model.list_replies(
            session, site_ids, status=status, limit=SEARCH_WINDOW if keyword else limit
        )
    rows = await opened(personal, group_id, rows)
    if keyword:
        wanted = keyword.lower()
        rows = [
            r
            for r in rows
            if wanted in str(r.get("body") or "").lower()
            or wanted in str(r.get("keyword") or "").lower()
        ]
    return rows[:limit]


async def opened(
    personal: PersonalData, group_id: str, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`rows` of the group's replies read model with the patient's number and texts opened
    for staff (each erased one reads "erased"; docs/privacy.md)."""
    for row in rows:
        for name in ("from_number", "body", "last_answer"):
            row[name] = await personal.open(group_id, row.get(name))
    return rows


async def unread(db: async_sessionmaker[AsyncSession], site_ids: list[str]) -> dict[str, int]:
    """Unread replies per site."""
    async with db() as session:
        return await replies_model.unread_counts(session, site_ids)
