"""Erasures of a recipient's personal data (the OPTOUTS stream, `optouts.<group>.erasures`).

On the suppression stream because both are a group's decisions about one recipient, and the
gateways that follow the lists learn of an erasure from the same stream (docs/privacy.md).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from shared.events.envelope import EventData
from shared.events.registry import registry


@registry.register
class RecipientErased(EventData):
    """A recipient's data keys were deleted: every field sealed under them now reads "erased".

    Carries only the recipient's salted hash, never the recipient."""

    event_type = "stagger.privacy.recipient_erased"
    event_version = 1

    group_id: str
    recipient_tag: str
    erased_by: str
    erased_at: datetime
    keys_erased: int


@registry.register
class RetentionSet(EventData):
    """A group's retention of personal data (on `optouts.<group>.retention`); the latest wins.

    After `bodies_days` a message's body, subject, html and attachments read "erased"; after
    `replies_days` a reply's text does. Addresses stay until erasure; delivery metadata (times,
    outcomes) is not personal data on its own and stays while `metadata_days` is unset."""

    event_type = "stagger.privacy.retention_set"
    event_version = 1

    group_id: str
    bodies_days: int = Field(default=90, ge=1, le=36_500)
    replies_days: int = Field(default=90, ge=1, le=36_500)
    metadata_days: int | None = Field(default=None, ge=1, le=36_500)


class StreamCount(BaseModel):
    """One stream's messages, and how many of them a rewrite sealed."""

    stream: str
    messages: int
    sealed: int


class ChainHead(BaseModel):
    """The last record of one audit chain (a group's, or `_system`), as it was."""

    chain: str
    position: int
    hash: str
    records: int


@registry.register
class StreamsRewritten(EventData):
    """Events written in clear before personal data was sealed were rewritten sealed
    (`stagger privacy rewrite-streams`, on `optouts._system.streams_rewritten`).

    The audit trail was rebuilt from the rewritten streams, so the hashes changed: this record,
    in the new trail's `_system` chain after the rewritten events, keeps the old chains' heads
    so an auditor can tie the old trail (a kept export or database copy) to the new one. Never
    carries personal data."""

    event_type = "stagger.privacy.streams_rewritten"
    event_version = 1

    rewritten_by: str
    rewritten_at: datetime
    streams: list[StreamCount]
    audit_messages_before: int
    audit_messages_after: int
    audit_messages_expired: int = 0
    """Copies the AUDIT stream held of events their own streams no longer had (past their
    `max_age`): kept, through `REWRITE_ORPHANS`, at the front of the new AUDIT stream."""
    old_records: int
    old_chain_heads: list[ChainHead]
