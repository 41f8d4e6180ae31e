"""Accepted messages (the OUTBOX work queue, `outbox.<channel>.<site>`).

The same schema is accepted from producers that publish to NATS directly: publish this event to
`outbox.<channel>.<site>` with `Nats-Msg-Id` = `message_id`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events.envelope import EventData
from shared.events.registry import registry

# v1 had no consent category: it is the one its kind gets by default (`KIND_CATEGORY` as it was
# when v2 was written, frozen here so that a later change of the live rule never rewrites
# history). Every group then had the default categories, so these are all valid.
_V1_CONSENT = {
    "reminder": "service",
    "manual": "service",
    "other": "service",
    "recall": "marketing",
    "contact_list": "marketing",
    "marketing": "marketing",
}

SubmittedCategory = Literal["reminder", "recall", "contact_list", "marketing", "manual", "other"]
"""What a submitter may label a message (the API refuses anything else)."""
Category = Literal[
    "reminder", "recall", "contact_list", "marketing", "manual", "other", "auto_reply"
]
"""`auto_reply`: a STOP confirmation or HELP answer the SMS gateway queues itself; the one
kind of message an opted-out number still gets (the confirmation that it opted out)."""
BULK_CATEGORIES = frozenset({"recall", "contact_list", "marketing"})
AUTO_REPLY: Final = "auto_reply"


class Attachment(BaseModel):
    """An email attachment carried with the message (size-limited at submission)."""

    model_config = ConfigDict(frozen=True)

    # 255 characters at the API; room here for the sealed form (docs/privacy.md).
    filename: str = Field(max_length=1024)
    content_type: str = Field(default="application/octet-stream", max_length=255)
    size: int = Field(ge=0)
    content_b64: str


@registry.register
class MessageAccepted(EventData):
    """A message Stagger has accepted to send; it will reach exactly one terminal event."""

    event_type = "stagger.message.accepted"
    event_version = 2

    message_id: str
    group_id: str
    site_id: str
    channel: Literal["sms", "email"]
    to: str
    body: str
    subject: str | None = None
    html: str | None = None
    attachments: list[Attachment] = []
    category: Category = "other"
    # v2: the consent category (one of the group's, `shared.domain.consent`). A producer on the
    # bus may leave it out: the gateway's intake gives it the default for its kind then.
    consent_category: str | None = None
    client_reference: str | None = None
    not_before: datetime | None = None
    expires_at: datetime | None = None
    segments: int | None = None
    encoding: str | None = None
    submitted_at: datetime
    # Added without a new version: readers ignore unknown fields (`extra="ignore"`) and old
    # events read as None, so both directions stay compatible (see docs/events.md).
    batch_id: str | None = None
    # The recipient's salted hash when the personal fields are sealed (docs/privacy.md):
    # the gateway files and looks the message up by it, never by the address.
    recipient_tag: str | None = None


@registry.upcaster(MessageAccepted.event_type, 1)
def _accepted_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    kind = data.get("category", "other")
    return {**data, "consent_category": _V1_CONSENT.get(kind, "service")}


def wants_unsubscribe(message: MessageAccepted) -> bool:
    """True for bulk kinds and any consent category but `service`: such email carries a
    one-click unsubscribe (PECR, Spam Act s18, RFC 8058)."""
    return message.category in BULK_CATEGORIES or message.consent_category not in (
        None,
        "service",
    )
