"""Accepted messages (the OUTBOX work queue, `outbox.<channel>.<site>`).

The same schema is accepted from producers that publish to NATS directly: publish this event to
`outbox.<channel>.<site>` with `Nats-Msg-Id` = `message_id`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events.envelope import EventData
from shared.events.registry import registry

Category = Literal["reminder", "recall", "contact_list", "marketing", "manual", "other"]
BULK_CATEGORIES = frozenset({"recall", "contact_list", "marketing"})


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
    event_version = 1

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
