"""Suppression lists (the OPTOUTS stream, `optouts.<group>.<channel>`).

A group's list for a channel is the fold of these events: the latest event per recipient wins.
Opt-outs apply to every site of the group at once.
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
    recipient_tag: str | None = None
