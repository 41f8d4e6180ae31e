"""Who must not be contacted: each group's suppression lists, followed live from OPTOUTS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing

from nats.aio.client import Client
from nats.aio.msg import Msg

from shared.bus import subjects
from shared.bus.topology import OPTOUTS
from shared.domain.consent import Consent
from shared.events.codec import UndecodableEvent, decode
from shared.events.envelope import make_event
from shared.events.schemas.optouts import Channel, How, RecipientOptedIn, RecipientOptedOut
from shared.events.schemas.privacy import RecipientErased, RetentionSet
from shared.eventstore import EventStore, replay_batches, stream_position
from shared.privacy.cipher import is_personal, tag_of
from shared.privacy.codec import ADDRESS, PersonalData
from shared.privacy.shown import is_tag

log = logging.getLogger(__name__)


class SuppressionList:
    """(group, channel, recipient) → consent per category (`Consent`), kept current from the
    OPTOUTS stream."""

    def __init__(self, nc: Client, tagger: Callable[[str, str], str] | None = None) -> None:
        self._nc = nc
        # A gateway whose ledger files recipients by salted hash (docs/privacy.md) folds
        # opt-outs recorded in clear (unsubscribe links, the console, older events) into it.
        self._tagger = tagger
        self._consent: dict[tuple[str, str, str], Consent] = {}
        self.ready = asyncio.Event()
        # Purges of a gateway's clear copies when a recipient is erased (docs/privacy.md);
        # run for every erasure seen, also on each replay at start (they are idempotent).
        self.on_erased: list[Callable[[RecipientErased], Awaitable[object]]] = []
        # Each group's retention of personal data (the latest `retention_set`), for the
        # gateways' delivery-metadata retention.
        self.retention: dict[str, RetentionSet] = {}
        self._purges: set[asyncio.Task[object]] = set()

    def is_suppressed(
        self, group_id: str, channel: str, recipient: str, category: str | None = None
    ) -> bool:
        """True if the recipient opted out of this group's messages of `category` on this
        channel (`category` None: out of every category, i.e. STOP)."""
        consent = self._consent.get((group_id, channel, recipient.lower()))
        if consent is None:
            return False
        return (
            consent.all_out and not consent.back_in
            if category is None
            else consent.blocks(category)
        )

    def consent(self, group_id: str, channel: str, recipient: str) -> Consent:
        """The recipient's consent to this group's messages on this channel."""
        return self._consent.get((group_id, channel, recipient.lower()), Consent())

    def recipients(self, group_id: str, channel: str) -> list[str]:
        """A group's recipients who opted out of anything on a channel (for the console)."""
        return sorted(r for g, c, r in self._consent if g == group_id and c == channel)

    def apply(self, data: object) -> None:
        """Fold one event into the list."""
        if isinstance(data, RecipientOptedOut | RecipientOptedIn):
            key = (data.group_id, data.channel, self.key(data))
            before = self._consent.get(key, Consent())
            if isinstance(data, RecipientOptedOut):
                after = before.opted_out(data.category)
            else:
                after = before.opted_in(data.category)
            if after.empty:
                self._consent.pop(key, None)
            else:
                self._consent[key] = after
        elif isinstance(data, RetentionSet):
            self.retention[data.group_id] = data
        elif isinstance(data, RecipientErased):
            for purge in self.on_erased:
                task = asyncio.get_running_loop().create_task(_logged(purge(data)))
                self._purges.add(task)
                task.add_done_callback(self._purges.discard)

    def filed_as(self, group_id: str, recipient: str) -> str:
        """What the list files a recipient's address under (its salted hash where the
        gateway's ledger keeps those)."""
        if self._tagger is not None:
            return self._tagger(group_id, recipient)
        return recipient.lower()

    def key(self, data: RecipientOptedOut | RecipientOptedIn) -> str:
        """What the list files an event's recipient under."""
        if data.recipient_tag is not None:
            return data.recipient_tag
        if self._tagger is not None:
            return self._tagger(data.group_id, data.recipient)
        return data.recipient.lower()

    async def _on_msg(self, msg: Msg) -> None:
        with contextlib.suppress(UndecodableEvent):
            self.apply(decode(msg.headers, msg.data).data)
        if stream_position(msg)[1] == 0:
            self.ready.set()

    async def follow(self) -> None:
        """Load every list, then follow changes (background task)."""
        js = self._nc.jetstream()
        if (await js.stream_info(OPTOUTS)).state.messages == 0:
            self.ready.set()
        batches = replay_batches(self._nc, OPTOUTS, follow=True)
        async with aclosing(batches):
            async for batch in batches:
                for msg in batch:
                    await self._on_msg(msg)


async def _logged(work: Awaitable[object]) -> object:
    try:
        return await work
    except Exception:
        log.exception("purging an erased recipient's clear copies failed")
        return None


async def record_opt_out(
    nc: Client,
    *,
    group_id: str,
    channel: Channel,
    recipient: str,
    how: How,
    actor: str,
    keyword: str | None = None,
    site_id: str | None = None,
    cancelled: int = 0,
    event_id: str | None = None,
    category: str | None = None,
    personal: PersonalData | None = None,
) -> None:
    """Append an opt-out to the group's list (the event is the record; lists follow it).
    `category` None ends every category. With `personal`, the event carries the recipient
    sealed and its salted hash."""
    sealed, tag = await _sealed(personal, group_id, recipient)
    data = RecipientOptedOut(
        group_id=group_id,
        channel=channel,
        recipient=sealed,
        recipient_tag=tag,
        how=how,
        keyword=keyword,
        site_id=site_id,
        cancelled_messages=cancelled,
        category=category,
    )
    await _append(nc, data, channel, tag or recipient, group_id, site_id, actor, event_id)


async def record_opt_in(
    nc: Client,
    *,
    group_id: str,
    channel: Channel,
    recipient: str,
    how: How,
    actor: str,
    keyword: str | None = None,
    site_id: str | None = None,
    event_id: str | None = None,
    category: str | None = None,
    personal: PersonalData | None = None,
) -> None:
    """Append an opt-in (re-subscription) to the group's list; `category` None restores every
    category."""
    sealed, tag = await _sealed(personal, group_id, recipient)
    data = RecipientOptedIn(
        group_id=group_id,
        channel=channel,
        recipient=sealed,
        recipient_tag=tag,
        how=how,
        keyword=keyword,
        site_id=site_id,
        category=category,
    )
    await _append(nc, data, channel, tag or recipient, group_id, site_id, actor, event_id)


async def _sealed(
    personal: PersonalData | None, group_id: str, recipient: str
) -> tuple[str, str | None]:
    # Staff acting on a listed entry pass what the list shows them: the sealed value, or the
    # salted hash alone where only that was recorded (a bounce from a sealed ledger).
    if is_personal(recipient):
        return recipient, tag_of(recipient)
    if is_tag(recipient):
        return recipient, recipient
    if personal is None:
        return recipient, None
    sealed = await personal.seal(group_id, recipient, ADDRESS, recipient)
    return sealed, personal.tag(group_id, recipient)


async def _append(
    nc: Client,
    data: RecipientOptedOut | RecipientOptedIn,
    channel: Channel,
    recipient: str,
    group_id: str,
    site_id: str | None,
    actor: str,
    event_id: str | None,
) -> None:
    event = make_event(
        data,
        source=f"{channel}_gateway",
        actor=actor,
        subject=recipient,
        group_id=group_id,
        site_id=site_id,
        event_id=event_id,
    )
    await EventStore(nc, OPTOUTS).append(subjects.optouts(group_id, channel), event)
