"""Inbound SMS replies (the INBOUND stream, `replies.<site>`).

A reply is attributed by the provider account it came through to the one group sending
through it, then to the message it answers (the provider's own link when it names a message of
that account to that number, else the latest message sent to that number through the account)
and classified with the site's keywords:
opt-out and opt-in words act on the group's suppression list, reply keywords carry a meaning
(confirm, cancel, …), anything else is left for a person.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from shared.events.envelope import EventData
from shared.events.registry import registry

ReplyKind = Literal["optout", "optin", "help", "keyword", "unmatched"]


@registry.register
class ReplyReceived(EventData):
    """A patient's SMS reached us; `kind` says what it asks for."""

    event_type = "stagger.reply.received"
    event_version = 1

    group_id: str
    site_id: str
    provider: str
    provider_inbound_id: str
    from_number: str
    to: str
    body: str
    received_at: datetime
    in_reply_to: str | None = None
    kind: ReplyKind
    keyword: str | None = None
    meaning: str | None = None
    cancelled_messages: int = 0
    # Added compatibly (no new version): the consent category an opt-out ended; None for
    # STOP (every category) and for every other kind of reply.
    optout_category: str | None = None
    # Added without a new version (old events read as None): the STOP confirmation or HELP
    # answer queued for this reply, if the site sends one.
    auto_reply_message_id: str | None = None


@registry.register
class ReplyHandled(EventData):
    """Staff marked a reply handled (read and acted on); it no longer counts as unread."""

    event_type = "stagger.reply.handled"
    event_version = 1

    group_id: str
    site_id: str
    reply_id: str
    """The id of the `stagger.reply.received` event."""
    note: str = ""


@registry.register
class ReplyAnswered(EventData):
    """Staff answered a reply with a one-off SMS from the same site; the SMS itself went
    through the normal submission pipeline (paced, audited) as `message_id`."""

    event_type = "stagger.reply.answered"
    event_version = 1

    group_id: str
    site_id: str
    reply_id: str
    message_id: str
    to: str
    body: str
