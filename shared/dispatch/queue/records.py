"""What the queue hands out and takes in: claimed and incoming messages, and their key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.events.schemas.dispatch import (
    Release,
)
from shared.events.schemas.messages import MessageAccepted

Key = tuple[str, str]
"""(site id, message id): a message's key in the ledger. Ids are unique within a site only."""

INGEST_CHUNK_BITS = 7
"""Intake inserts at most 2**7 = 128 rows per statement, in power-of-two chunks."""


@dataclass(frozen=True)
class Claimed:
    """A message this replica holds the lease on and may now send."""

    message_id: str
    group_id: str
    site_id: str
    recipient: str
    message: MessageAccepted
    attempts: int
    release: Release | None
    expires_at: datetime | None
    traceparent: str | None = None
    # What the ledger files the recipient under (its salted hash when personal fields are
    # sealed, docs/privacy.md); `recipient` and `message` are then opened for the send.
    lookup: str | None = None

    @property
    def recipient_key(self) -> str:
        """The recipient as suppression lists and ledger lookups know it."""
        return self.lookup if self.lookup is not None else self.recipient

    @property
    def key(self) -> Key:
        """What names this message in the ledger: its site and its id."""
        return (self.site_id, self.message_id)


@dataclass(frozen=True)
class Incoming:
    """An accepted message as taken from the outbox."""

    message: MessageAccepted
    actor: str
    correlation_id: str | None = None
    sequence: int = 0
    traceparent: str | None = None
