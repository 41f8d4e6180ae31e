"""Inbound email and email-account health.

- `inbound.email.<site>` (INBOUND stream): each message found in a site's mailbox, once
  (`email_received`, bounces included), and each quarantined attachment handed to staff
  (`attachment_released`).
- `provider.<account>` (PROVIDERS stream): the SMTP/IMAP account's state as the gateway last
  saw it (`email_account_status`), for the settings page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shared.events.envelope import EventData
from shared.events.registry import registry

SniffedType = Literal["pdf", "png", "jpeg", "gif", "zip", "docx", "exe", "unknown"]


class InboundAttachment(BaseModel):
    """An attachment of an inbound message, as quarantined (never opened by Stagger)."""

    model_config = ConfigDict(frozen=True)

    attachment_id: str
    filename: str | None = None
    declared_type: str
    sniffed_type: SniffedType
    size: int
    sha256: str | None = None
    stored: bool
    reason: str = ""


class Bounce(BaseModel):
    """What a delivery-status notification (RFC 3464) says about one of our messages."""

    model_config = ConfigDict(frozen=True)

    original_message_id: str | None = None
    action: str
    status: str | None = None
    recipient: str | None = None
    diagnostic: str | None = None


@registry.register
class InboundEmailReceived(EventData):
    """A message arrived in a site's mailbox; recorded once per (account, mailbox,
    UIDVALIDITY, UID). `matched_message_id` is the patient message it answers, when known.

    Personal fields are sealed (docs/privacy.md): `sender` under the sender's `id` key,
    `sender_name`, `subject` and the attachments' `filename` under their `body` keys, a
    bounce's `recipient` under that patient's `id` key; `sender_tag` is the sender's salted
    hash. Events recorded before sealing carry them in clear and no tag."""

    event_type = "stagger.inbound.email_received"
    event_version = 1

    group_id: str
    site_id: str
    account: str
    mailbox: str
    uidvalidity: int
    uid: int
    kind: Literal["message", "bounce"]
    sender: str | None = None
    sender_tag: str | None = None
    sender_name: str | None = None
    subject: str = ""
    size: int
    internet_message_id: str | None = None
    in_reply_to: str | None = None
    received_at: datetime
    matched_message_id: str | None = None
    matched_by: Literal["in_reply_to", "references", "bounce", "sender"] | None = None
    bounce: Bounce | None = None
    attachments: list[InboundAttachment] = []
    truncated: bool = False


@registry.register
class AttachmentReleased(EventData):
    """A quarantined attachment was released to staff: by a person's explicit release action
    (`control.email.release_attachment.<site>`), or at intake when the site opens attachments
    directly (`automatic`)."""

    event_type = "stagger.inbound.attachment_released"
    event_version = 1

    group_id: str
    site_id: str
    attachment_id: str
    inbound_event_id: str
    sha256: str
    filename: str | None = None
    sniffed_type: SniffedType
    size: int
    automatic: bool = False
    reason: str = ""


@registry.register
class EmailAccountStatus(EventData):
    """The email account's health changed (login refused, TLS failure, back to normal…), as
    the gateway saw it at `checked_at`; the settings page shows the latest. An OAuth sign-in
    refused for good (revoked consent, disabled app, wrong secret) has `stage` `login` and the
    authorization server's reason in `error`, and holds the account until it signs in again."""

    event_type = "stagger.provider.email_account_status"
    event_version = 1

    account: str
    group_id: str | None = None
    site_id: str | None = None
    ok: bool
    stage: Literal["connect", "tls", "login", "send", "imap"]
    error: str | None = None
    code: int | None = None
    checked_at: datetime
