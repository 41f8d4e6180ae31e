"""Inbound SMS: attribute, classify, act on opt-outs at once, record the reply.

1. A webhook already processed (providers retry) is recognised by its provider id and ignored.
2. The reply is attributed (`shared.domain.reply_attribution`): the provider account it came
   through names the one group that sends through it; inside that group, the message it
   answers (the provider's `in_reply_to`, if that message went through the same account to
   the same number), else the site that last sent to the number through the account, among
   the sites sending from the number written to. When no single group can be named, nothing
   is guessed: the reply is kept in `sms_unrouted_replies` with the reason, and no opt-out
   is applied anywhere.
3. The text is classified with that site's words (`classify_reply`: opt-out first, then opt-in,
   help, reply keywords; one word only), then against the group's consent-category phrases
   ("STOP RECALLS" ends marketing only, where the region allows). STOP-family words put the
   number on the group's suppression list (every category) at once — in this replica's
   memory, then every queued message of the group to that number (of that category) ends
   `suppressed`, then the opt-out event is appended — and START takes it off.
4. One `stagger.reply.received` event is written together with the de-duplication row, and,
   when the site sends one (`SiteSettings.auto_reply`: a STOP confirmation or HELP answer, by
   default only where the region expects it, the US), one `auto_reply` SMS into OUTBOX.

The CANCEL clash: in the US, CANCEL is a carrier opt-out word and is treated as one; elsewhere
it cancels an appointment (a reply keyword), see `shared.domain.keywords`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.sms_gateway.adapters import tables, unrouted
from services.sms_gateway.adapters.account_sites import AccountSites
from services.sms_gateway.adapters.ledger import Ledger
from services.sms_gateway.adapters.optouts import BusOptOuts
from services.sms_gateway.adapters.outbox import GatewayEvents
from services.sms_gateway.adapters.providers.base import Inbound
from shared.bus import subjects
from shared.db.sql import insert_ignoring_duplicates
from shared.dispatch.pending_events import event_id
from shared.dispatch.queue import MessageQueue
from shared.domain import reply_attribution
from shared.domain.consent import normalise_phrase, optout_scope, phrase_category
from shared.domain.keywords import ReplyClass, classify_reply
from shared.domain.reply_attribution import InboundKey, Owners, Routed, SentMessage, Unrouted
from shared.domain.segments import count_segments
from shared.events.schemas.messages import AUTO_REPLY, MessageAccepted
from shared.events.schemas.optouts import RecipientOptedIn, RecipientOptedOut
from shared.events.schemas.replies import ReplyReceived
from shared.privacy.codec import ADDRESS, REPLY, PersonalData
from shared.sites import Site, SiteDirectory
from shared.suppression import SuppressionList

log = logging.getLogger(__name__)


def classify(site: Site, text: str) -> tuple[ReplyClass, str | None]:
    """A reply classified with the site's effective keywords, and the consent category an
    opt-out ends (None = every category).

    The STOP family wins over a category phrase (a clash errs towards the wider opt-out); a
    category phrase ("STOP RECALLS") is an opt-out of that category, widened to every
    category where the region does not allow per-category opt-outs."""
    settings = site.settings
    meanings = {
        word: meaning for meaning, words in settings.reply_words().items() for word in words
    }
    region = settings.profile.region
    verdict = classify_reply(
        text, region, settings.optout_words(), settings.optin_words(), meanings
    )
    if verdict.kind in ("optout", "optin"):
        return verdict, None
    category = phrase_category(text, settings.consent.phrases())
    if category is None:
        return verdict, None
    return ReplyClass("optout", normalise_phrase(text)), optout_scope(region, category)


def auto_reply(site: Site, kind: str, number: str, key: str) -> MessageAccepted | None:
    """The STOP confirmation or HELP answer this reply gets from its site, if any
    (`SiteSettings.auto_reply`: the site's text, else the region's where it expects one)."""
    text = site.settings.auto_reply(kind)
    if text is None:
        return None
    counted = count_segments(text)
    return MessageAccepted(
        message_id=event_id(key, "auto-reply")[:64],
        group_id=site.group_id,
        site_id=site.site_id,
        channel="sms",
        to=number,
        body=text,
        category=AUTO_REPLY,
        client_reference=f"auto-reply:{kind}",
        segments=counted.segments,
        encoding=counted.encoding,
        submitted_at=datetime.now(UTC),
    )


class ReplyHandler:
    """Inbound SMS handling (called by the webhook routes)."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        events: GatewayEvents,
        ledger: Ledger,
        account_sites: AccountSites,
        sites: Callable[[], SiteDirectory],
        suppression: Callable[[], SuppressionList],
        queue: Callable[[], MessageQueue],
        optouts: BusOptOuts,
        personal: PersonalData | None = None,
    ) -> None:
        self._sessions = sessions
        # Seals the reply's number and text, and files the number under its salted hash.
        self.personal = personal
        self._events = events
        self._ledger = ledger
        self._account_sites = account_sites
        # Made after `register` (the suppression list needs NATS, the engine makes its site
        # directory and queue in `start`): read at use.
        self._sites = sites
        self._suppression = suppression
        self._queue = queue
        self._optouts = optouts

    async def seen(self, key: str) -> bool:
        """True if this webhook was processed already."""
        t = tables.webhook_events
        async with self._sessions() as session:
            found = await session.execute(sa.select(t.c.event_key).where(t.c.event_key == key))
            return found.first() is not None

    async def handle(self, inbound: Inbound, provider: str) -> str | Unrouted:
        """Process one inbound SMS; returns its kind, "duplicate", or why it belongs to no
        single group (then it is kept for an operator and nothing else happens)."""
        key = f"{provider}:inbound:{inbound.inbound_id}"
        if await self.seen(key):
            return "duplicate"
        match = await self.attribute(inbound, provider)
        site = self._sites().get(match.site_id) if isinstance(match, Routed) else None
        if not isinstance(match, Routed) or site is None:
            why = (
                match
                if isinstance(match, Unrouted)
                else Unrouted("unknown_account", "the site is no longer known")
            )
            async with self._sessions() as session, session.begin():
                if not await unrouted.record(session, key, provider, inbound, why):
                    return "duplicate"
            log.warning("reply not attributed", extra={"provider": provider, "code": why.code})
            return why
        verdict, category = classify(site, inbound.body)
        number = inbound.from_number
        cancelled = 0
        if verdict.kind == "optout":
            cancelled = await self._opt_out(site, number, verdict.keyword, key, category)
        elif verdict.kind == "optin":
            await self._opt_in(site, number, verdict.keyword, key)
        from_number, body = number, inbound.body
        if self.personal is not None:
            from_number = await self.personal.seal(site.group_id, number, ADDRESS, number)
            body = await self.personal.seal(site.group_id, number, REPLY, body)
        data = ReplyReceived(
            group_id=site.group_id,
            site_id=site.site_id,
            provider=provider,
            provider_inbound_id=inbound.inbound_id,
            from_number=from_number,
            to=inbound.to,
            body=body,
            received_at=inbound.received_at,
            in_reply_to=match.message_id,
            kind=verdict.kind,
            keyword=verdict.keyword,
            meaning=verdict.meaning,
            cancelled_messages=cancelled,
            optout_category=category,
        )
        t = tables.webhook_events
        async with self._sessions() as session, session.begin():
            inserted = await session.execute(
                insert_ignoring_duplicates(
                    session,
                    t,
                    [{"event_key": key, "kind": "inbound", "received_at": datetime.now(UTC)}],
                ).returning(t.c.event_key)
            )
            if inserted.first() is None:
                return "duplicate"  # another replica got the same retry at the same time
            answer = auto_reply(site, verdict.kind, number, key)
            if answer is not None:
                # Through the gateway's own outbox into OUTBOX, as any submission: stored once
                # (its id derives from the webhook), paced and audited like every SMS.
                data = data.model_copy(update={"auto_reply_message_id": answer.message_id})
                await self._events.add(
                    session,
                    subjects.outbox("sms", site.site_id),
                    answer,
                    event_id=answer.message_id,
                    group_id=site.group_id,
                    site_id=site.site_id,
                    about=answer.message_id,
                )
            await self._events.add(
                session,
                subjects.replies(site.site_id),
                data,
                event_id=event_id(key, "reply"),
                group_id=site.group_id,
                site_id=site.site_id,
                about=match.message_id or inbound.inbound_id,
            )
        self._events.nudge()
        log.info(
            "reply received",
            extra={"site": site.site_id, "kind": verdict.kind, "matched": match.message_id},
        )
        return verdict.kind

    def _lookup(self, group_id: str, number: str) -> str | None:
        """What the ledger and the suppression list file `number` under (None: itself)."""
        return None if self.personal is None else self.personal.tag(group_id, number)

    async def _opt_out(
        self, site: Site, number: str, keyword: str | None, key: str, category: str | None
    ) -> int:
        # This replica refuses the number from now on; the others follow OPTOUTS.
        tag = self._lookup(site.group_id, number)
        self._suppression().apply(
            RecipientOptedOut(
                group_id=site.group_id,
                channel="sms",
                recipient=number,
                how="keyword",
                category=category,
                recipient_tag=tag,
            )
        )
        cancelled = await self._queue().suppress_recipient(
            site.group_id,
            tag or number,
            reason=f"the recipient replied {keyword}",
            category=category,
        )
        self._events.nudge()
        await self._optouts.opted_out(
            site.group_id,
            number,
            "keyword",
            keyword=keyword,
            site_id=site.site_id,
            cancelled=len(cancelled),
            event_id=event_id(key, "optout"),
            category=category,
        )
        return len(cancelled)

    async def _opt_in(self, site: Site, number: str, keyword: str | None, key: str) -> None:
        self._suppression().apply(
            RecipientOptedIn(
                group_id=site.group_id,
                channel="sms",
                recipient=number,
                how="keyword",
                recipient_tag=self._lookup(site.group_id, number),
            )
        )
        await self._optouts.opted_in(
            site.group_id,
            number,
            "keyword",
            keyword=keyword,
            site_id=site.site_id,
            event_id=event_id(key, "optin"),
        )

    async def attribute(self, inbound: Inbound, provider: str) -> Routed | Unrouted:
        """The site (and message) a reply belongs to, or why none can be named."""
        key = InboundKey(provider, inbound.account_id, inbound.to, inbound.from_number)
        lines = self._account_sites.on_account(self._sites(), provider, inbound.account_id)
        found = reply_attribution.owners(lines, key)
        if isinstance(found, Unrouted):
            return found
        if self.personal is not None:
            # The ledger files numbers by their salted hash: match the sender by it too.
            key = replace(key, from_number=self.personal.tag(found.group_id, key.from_number))
        linked = await self._message(inbound.in_reply_to, found) if inbound.in_reply_to else None
        last = (
            None if reply_attribution.answers(found, key, linked) else await self._last(found, key)
        )
        return reply_attribution.route(found, key, linked, last)

    async def _message(self, message_id: str, found: Owners) -> SentMessage | None:
        return await self._ledger.sent_message(message_id, found.group_id)

    async def _last(self, found: Owners, key: InboundKey) -> SentMessage | None:
        sites = [s.site_id for s in found.pool]
        return await self._ledger.last_sent(found.group_id, key.from_number, found.accounts, sites)
