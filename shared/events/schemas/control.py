"""Operator commands (the CONTROL stream, `control.<command>.<site>`), with their actors."""

from __future__ import annotations

from typing import Literal

from shared.events.envelope import EventData
from shared.events.registry import registry


@registry.register
class SendNowRequested(EventData):
    """Someone pressed send-now: one manual tick that ignores the delay but not hard limits."""

    event_type = "stagger.control.send_now_requested"
    event_version = 1

    group_id: str
    site_id: str
    channel: Literal["sms", "email"]
    reason: str = ""


@registry.register
class ResetFailedRequested(EventData):
    """Retry the site's failed messages (the seed's "Reset Failed Messages")."""

    event_type = "stagger.control.reset_failed_requested"
    event_version = 1

    group_id: str
    site_id: str
    channel: Literal["sms", "email"]
    message_ids: list[str] = []


@registry.register
class CancelRequested(EventData):
    """Cancel queued messages (by id) before they are sent."""

    event_type = "stagger.control.cancel_requested"
    event_version = 1

    group_id: str
    site_id: str
    channel: Literal["sms", "email"]
    message_ids: list[str]
    reason: str = ""
    # Which batch the ids were taken from, for the audit trail (optional, added compatibly).
    batch_id: str | None = None


@registry.register
class AttachmentReleaseRequested(EventData):
    """Release a quarantined attachment to staff."""

    event_type = "stagger.control.attachment_release_requested"
    event_version = 1

    group_id: str
    site_id: str
    attachment_id: str
    reason: str = ""
