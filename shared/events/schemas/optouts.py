"""Suppression lists (the OPTOUTS stream, `optouts.<group>.<channel>`).

A group's list for a channel is the fold of these events per recipient
(`shared.domain.consent.Consent`): an event naming no `category` (STOP, START, or any event
written before categories existed) covers every category; one naming a category covers that
category only. Opt-outs apply to every site of the group at once.
"""

from __future__ import annotations

from typing import Literal

from shared.events.envelope import EventData
from shared.events.registry import registry

Channel = Literal["sms", "email"]
How = Literal["keyword", "unsubscribe_link", "one_click", "staff", "provider", "bounce"]


@registry.register
class RecipientOptedOut(EventData):
    """A recipient asked not to be contacted on this channel by this group."""

    event_type = "stagger.optout.opted_out"
    event_version = 1

    group_id: str
    channel: Channel
    recipient: str
    how: How
    keyword: str | None = None
    site_id: str | None = None
    cancelled_messages: int = 0
    # Added compatibly (no new version): an old event names no category, which means every
    # category — exactly what it did when it was written.
    category: str | None = None
    # The recipient's salted hash when `recipient` is sealed (docs/privacy.md): what the
    # suppression list keeps, so an erased recipient who opted out stays suppressed.
    recipient_tag: str | None = None


@registry.register
class RecipientOptedIn(EventData):
    """A recipient asked to be contacted again (e.g. replied START)."""

    event_type = "stagger.optout.opted_in"
    event_version = 1

    group_id: str
    channel: Channel
    recipient: str
    how: How
    keyword: str | None = None
    site_id: str | None = None
    category: str | None = None  # None = every category (START); see RecipientOptedOut
    recipient_tag: str | None = None


@registry.register
class SoftBounceCounted(EventData):
    """An email to this address bounced softly (a temporary failure); after `threshold` of
    them the address is suppressed (`RecipientOptedOut`, `how: bounce`)."""

    event_type = "stagger.optout.soft_bounce_counted"
    event_version = 1

    group_id: str
    channel: Channel = "email"
    recipient: str
    count: int
    threshold: int
    status: str | None = None
    diagnostic: str | None = None
    site_id: str | None = None
