"""The life of a message after acceptance (the DISPATCH stream, `dispatch.<channel>.<site>`).

Terminal events — exactly one per accepted message — are `sent`, `failed`, `suppressed`,
`cancelled` and `expired`. After `sent`, a provider's receipt may add `delivered` or
`undelivered`. `queued` and `deferred` are progress, not outcomes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from shared.events.envelope import EventData
from shared.events.registry import registry

Channel = Literal["sms", "email"]

TERMINAL_TYPES = frozenset(
    {
        "stagger.dispatch.sent",
        "stagger.dispatch.failed",
        "stagger.dispatch.suppressed",
        "stagger.dispatch.cancelled",
        "stagger.dispatch.expired",
    }
)


class Release(BaseModel):
    """The tick that let a message go: why it was sent when it was."""

    model_config = ConfigDict(frozen=True)

    tick_id: str
    scheduled_at: datetime
    reason: str
    manual: bool = False
    actor: str | None = None


class _MessageEvent(EventData):
    message_id: str
    group_id: str
    site_id: str
    channel: Channel


@registry.register
class MessageQueued(_MessageEvent):
    """The gateway holds the message and will send it when a tick allows."""

    event_type = "stagger.dispatch.queued"
    event_version = 2

    to: str
    category: str = "other"
    # v2: the message's consent category (`shared.domain.consent`).
    consent_category: str = "service"
    client_reference: str | None = None
    submitted_at: datetime | None = None
    submitted_by: str | None = None
    retry_of: str | None = None
    # The submission it came in (optional, added compatibly: no new version, see
    # docs/events.md); the config service's batch read model groups messages by it.
    batch_id: str | None = None


@registry.register
class MessageDeferred(_MessageEvent):
    """Not sent yet, and why (quiet hours, provider back-off, no credits): it stays queued."""

    event_type = "stagger.dispatch.deferred"
    event_version = 1

    reason: str
    retry_at: datetime | None = None
    attempt: int = 0


@registry.register
class MessageSent(_MessageEvent):
    """Handed to the provider, which accepted it. Terminal."""

    event_type = "stagger.dispatch.sent"
    event_version = 1

    account: str
    provider_message_id: str | None = None
    sent_at: datetime
    attempts: int = 1
    segments: int | None = None
    cost: float | None = None
    released_by: Release | None = None
    reconciled: bool = False


@registry.register
class MessageDelivered(_MessageEvent):
    """The provider reports delivery to the handset or mailbox."""

    event_type = "stagger.dispatch.delivered"
    event_version = 1

    provider_message_id: str | None = None
    occurred_at: datetime
    raw_status: str | None = None


@registry.register
class MessageUndelivered(_MessageEvent):
    """The provider reports that delivery failed after sending (or a bounce arrived)."""

    event_type = "stagger.dispatch.undelivered"
    event_version = 1

    provider_message_id: str | None = None
    occurred_at: datetime
    reason: str
    raw_status: str | None = None


@registry.register
class MessageFailed(_MessageEvent):
    """Could not be sent, with the reason, after bounded retries. Terminal."""

    event_type = "stagger.dispatch.failed"
    event_version = 1

    reason: str
    attempts: int
    permanent: bool = True
    provider_response: str | None = None


@registry.register
class MessageSuppressed(_MessageEvent):
    """Not sent because the recipient opted out (no provider call was made). Terminal."""

    event_type = "stagger.dispatch.suppressed"
    event_version = 1

    reason: str


@registry.register
class MessageCancelled(_MessageEvent):
    """Cancelled before sending by a person or a rule. Terminal."""

    event_type = "stagger.dispatch.cancelled"
    event_version = 1

    reason: str


@registry.register
class MessageExpired(_MessageEvent):
    """Its `expires_at` passed before it could be sent. Terminal."""

    event_type = "stagger.dispatch.expired"
    event_version = 1

    expires_at: datetime


# v1 → v2 of `queued`: the consent category its kind had by default when v2 was written (every
# group then had the default categories), frozen here.
_V1_CONSENT = {"recall": "marketing", "contact_list": "marketing", "marketing": "marketing"}


@registry.upcaster(MessageQueued.event_type, 1)
def _queued_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    kind = data.get("category", "other")
    return {**data, "consent_category": _V1_CONSENT.get(kind, "service")}
