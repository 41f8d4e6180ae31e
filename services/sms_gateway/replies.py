"""Inbound SMS: match, classify, act on opt-outs at once, record the reply.

1. A webhook already processed (providers retry) is recognised by its provider id and ignored.
2. The reply is matched to the message it answers: the provider's own link (`in_reply_to`)
   when it gives one, else the latest message sent to that number from a site whose sender is
   the number the patient wrote to (any site of that provider account when none matches).
3. The text is classified with that site's words (`classify_reply`: opt-out first, then opt-in,
   help, reply keywords; one word only). STOP-family words put the number on the group's
   suppression list at once — in this replica's memory, then every queued message of the group
   to that number ends `suppressed`, then the opt-out event is appended — and START takes it off.
4. One `stagger.reply.received` event is written together with the de-duplication row.

The CANCEL clash: in the US, CANCEL is a carrier opt-out word and is treated as one; elsewhere
it cancels an appointment (a reply keyword), see `shared.domain.keywords`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from services.sms_gateway import tables
from services.sms_gateway.providers.base import Inbound
from shared.bus import subjects
from shared.db.sql import insert_ignoring_duplicates
from shared.dispatch import schema
from shared.dispatch.pending_events import event_id
from shared.domain.keywords import ReplyClass, classify_reply
from shared.events.schemas.optouts import RecipientOptedIn, RecipientOptedOut
from shared.events.schemas.replies import ReplyReceived
from shared.sites import Site
from shared.suppression import record_opt_in, record_opt_out

if TYPE_CHECKING:
    from services.sms_gateway.service import SmsGatewayService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Match:
    """Where a reply belongs."""

    site: Site
    message_id: str | None


def classify(site: Site, text: str) -> ReplyClass:
    """A reply classified with the site's effective keywords."""
    settings = site.settings
    meanings = {
        word: meaning for meaning, words in settings.reply_words().items() for word in words
    }
    return classify_reply(
        text, settings.profile.region, settings.optout_words(), settings.optin_words(), meanings
    )


class Replies:
    """Inbound SMS handling (called by the webhook routes)."""

    def __init__(self, gateway: SmsGatewayService) -> None:
        self._gw = gateway

    async def seen(self, key: str) -> bool:
        """True if this webhook was processed already."""
        t = tables.webhook_events
        async with self._gw.ctx.db() as session:
            found = await session.execute(sa.select(t.c.event_key).where(t.c.event_key == key))
            return found.first() is not None

    async def handle(
        self, inbound: Inbound, provider: str, account_id: str | None = None
    ) -> str | None:
        """Process one inbound SMS; returns its kind, "duplicate", or None if it belongs to
        no site (the caller dead-letters it)."""
        key = f"{provider}:inbound:{inbound.inbound_id}"
        if await self.seen(key):
            return "duplicate"
        match = await self.match(inbound, provider, account_id)
        if match is None:
            return None
        site = match.site
        verdict = classify(site, inbound.body)
        number = inbound.from_number
        cancelled = 0
        if verdict.kind == "optout":
            cancelled = await self._opt_out(site, number, verdict.keyword, key)
        elif verdict.kind == "optin":
            await self._opt_in(site, number, verdict.keyword, key)
        data = ReplyReceived(
            group_id=site.group_id,
            site_id=site.site_id,
            provider=provider,
            provider_inbound_id=inbound.inbound_id,
            from_number=number,
            to=inbound.to,
            body=inbound.body,
            received_at=inbound.received_at,
            in_reply_to=match.message_id,
            kind=verdict.kind,
            keyword=verdict.keyword,
            meaning=verdict.meaning,
            cancelled_messages=cancelled,
        )
        t = tables.webhook_events
        async with self._gw.ctx.db() as session, session.begin():
            inserted = await session.execute(
                insert_ignoring_duplicates(
                    session,
                    t,
                    [{"event_key": key, "kind": "inbound", "received_at": datetime.now(UTC)}],
                ).returning(t.c.event_key)
            )
            if inserted.first() is None:
                return "duplicate"  # another replica got the same retry at the same time
            await self._gw.events.add(
                session,
                subjects.replies(site.site_id),
                data,
                event_id=event_id(key, "reply"),
                group_id=site.group_id,
                site_id=site.site_id,
                about=match.message_id or inbound.inbound_id,
            )
        self._gw.events.nudge()
        log.info(
            "reply received",
            extra={"site": site.site_id, "kind": verdict.kind, "matched": match.message_id},
        )
        return verdict.kind

    async def _opt_out(self, site: Site, number: str, keyword: str | None, key: str) -> int:
        # This replica refuses the number from now on; the others follow OPTOUTS.
        self._gw.suppression.apply(
            RecipientOptedOut(
                group_id=site.group_id, channel="sms", recipient=number, how="keyword"
            )
        )
        cancelled = await self._gw.engine.queue.suppress_recipient(
            site.group_id, number, reason=f"the recipient replied {keyword}"
        )
        self._gw.events.nudge()
        await record_opt_out(
            self._gw.ctx.nc,
            group_id=site.group_id,
            channel="sms",
            recipient=number,
            how="keyword",
            actor="service:sms_gateway",
            keyword=keyword,
            site_id=site.site_id,
            cancelled=len(cancelled),
            event_id=event_id(key, "optout"),
        )
        return len(cancelled)

    async def _opt_in(self, site: Site, number: str, keyword: str | None, key: str) -> None:
        self._gw.suppression.apply(
            RecipientOptedIn(group_id=site.group_id, channel="sms", recipient=number, how="keyword")
        )
        await record_opt_in(
            self._gw.ctx.nc,
            group_id=site.group_id,
            channel="sms",
            recipient=number,
            how="keyword",
            actor="service:sms_gateway",
            keyword=keyword,
            site_id=site.site_id,
            event_id=event_id(key, "optin"),
        )

    async def match(self, inbound: Inbound, provider: str, account_id: str | None) -> Match | None:
        """The site (and message) a reply belongs to, or None."""
        m = self._gw.dispatch.messages
        sites = self._gw.engine.sites
        if inbound.in_reply_to:
            async with self._gw.ctx.db() as session:
                row = (
                    await session.execute(
                        sa.select(m.c.site_id).where(m.c.message_id == inbound.in_reply_to)
                    )
                ).first()
            site = sites.get(row.site_id) if row is not None else None
            if site is not None:
                return Match(site, inbound.in_reply_to)
        candidates = [
            s
            for s in sites.all()
            if s.settings.sms.provider.kind == provider
            and (account_id is None or s.settings.sms.provider.account_id == account_id)
        ]
        senders = [s for s in candidates if s.settings.sms.sender_id == inbound.to]
        pool = senders or candidates
        if not pool:
            return None
        async with self._gw.ctx.db() as session:
            row = (
                await session.execute(
                    sa.select(m.c.message_id, m.c.site_id)
                    .where(
                        m.c.recipient == inbound.from_number,
                        m.c.state == schema.SENT,
                        m.c.site_id.in_([s.site_id for s in pool]),
                    )
                    .order_by(m.c.sent_at.desc())
                    .limit(1)
                )
            ).first()
        if row is not None:
            site = sites.get(row.site_id)
            if site is not None:
                return Match(site, row.message_id)
        if len(senders) >= 1:
            return Match(sorted(senders, key=lambda s: s.site_id)[0], None)
        return None
