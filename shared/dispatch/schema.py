"""The gateway tables, for one channel (`sms_…` or `email_…`).

`<channel>_messages` is both the queue and the ledger: a row is written before the provider
call (state `sending`, with a lease) and after it (a terminal state). `<channel>_pending_events`
is a transactional outbox: each state change writes its event in the same transaction, and a
publisher moves them to JetStream afterwards, so no event is lost between a commit and a crash.
`<channel>_limiters` holds each provider account's throttle state, shared by every replica.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

# Message states. Terminal ones never change again.
QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
SUPPRESSED = "suppressed"
CANCELLED = "cancelled"
EXPIRED = "expired"
TERMINAL_STATES = frozenset({SENT, FAILED, SUPPRESSED, CANCELLED, EXPIRED})
# A cancel named a message this gateway has not taken in yet (still on its way through the
# outbox). The row holds the cancel until the message arrives; intake then ends it
# `cancelled` instead of queueing it. Never claimed, never counted as waiting.
CANCEL_PENDING = "cancel_pending"


@dataclass(frozen=True)
class DispatchTables:
    """The three tables of one channel."""

    messages: sa.Table
    pending_events: sa.Table
    limiters: sa.Table


def _message_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("group_id", sa.String(63), nullable=False),
        # A message is its (message id, site): ids are unique within a site only, so one
        # tenant's id can never keep another tenant's message out (or be merged into it).
        sa.Column("site_id", sa.String(63), primary_key=True),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        # The consent category (`shared.domain.consent`); null on rows stored before it
        # existed, which read as their kind's default.
        sa.Column("consent_category", sa.String(32), nullable=True),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("intake_seq", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("account", sa.String(64), nullable=True),
        sa.Column("released_by", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("provider_message_id", sa.String(200), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("receipt", sa.String(16), nullable=True),
        # W3C traceparent of the message's intake span (tracing on), parent of its send span.
        sa.Column("traceparent", sa.String(64), nullable=True),
    ]


def _pending_event_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("event_id", sa.String(80), primary_key=True),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _limiter_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("tat", sa.DateTime(timezone=True), nullable=True),
        sa.Column("held", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("held_reason", sa.Text, nullable=True),
        sa.Column("balance", sa.Float, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
    ]


def tables(prefix: str, metadata: sa.MetaData) -> DispatchTables:
    """Runtime table objects for a channel."""
    messages = sa.Table(
        f"{prefix}_messages",
        metadata,
        *_message_columns(),
        sa.Index(f"ix_{prefix}_messages_claim", "site_id", "state", "accepted_at"),
        sa.Index(f"ix_{prefix}_messages_state_lease", "state", "lease_until"),
        sa.Index(f"ix_{prefix}_messages_account_sent", "account", "sent_at"),
        sa.Index(f"ix_{prefix}_messages_recipient", "group_id", "recipient", "state"),
        sa.Index(f"ix_{prefix}_messages_provider_id", "provider_message_id"),
        sa.Index(f"ix_{prefix}_messages_finished", "state", "finished_at"),
    )
    pending = sa.Table(f"{prefix}_pending_events", metadata, *_pending_event_columns())
    limiters = sa.Table(f"{prefix}_limiters", metadata, *_limiter_columns())
    return DispatchTables(messages, pending, limiters)
