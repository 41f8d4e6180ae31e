"""The SMS gateway's tables: the shared dispatch tables (`sms_messages` is queue and ledger,
`sms_pending_events`, `sms_limiters`) plus its own."""

from __future__ import annotations

import sqlalchemy as sa

from shared.dispatch.schema import tables

metadata = sa.MetaData()

DISPATCH = tables("sms", metadata)

# From sms_0002: a reply is matched to the latest message sent to its number.
sa.Index(
    "ix_sms_messages_recipient_sent", DISPATCH.messages.c.recipient, DISPATCH.messages.c.sent_at
)

# From sms_0014: claims of an account's many sites read the queue in claim order
# (`shared.dispatch.queue.sql.claim_sites`) instead of sorting every queued message of them.
_m = DISPATCH.messages
sa.Index(
    "ix_sms_messages_queue_order",
    _m.c.state,
    _m.c.accepted_at,
    _m.c.intake_seq,
    _m.c.message_id,
    _m.c.site_id,
)

webhook_events = sa.Table(
    "sms_webhook_events",
    metadata,
    sa.Column("event_key", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)
"""Inbound webhooks already processed (providers retry: each is acted on once)."""

accounts = sa.Table(
    "sms_accounts",
    metadata,
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("provider", sa.String(16), nullable=False),
    sa.Column("balance", sa.Float, nullable=True),
    sa.Column("unit", sa.String(8), nullable=True),
    sa.Column("low", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("required", sa.Float, nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("crossing", sa.Integer, nullable=False, server_default="0"),
    sa.Column("topup_crossing", sa.Integer, nullable=False, server_default="0"),
    sa.Column("as_of", sa.Float, nullable=True),
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
)
"""Each provider account's last known balance, what a refused message needed (sending resumes
once the balance covers it) and its shared credit state (`shared.domain.credit_state`: `low`,
`crossing`, `topup_crossing`, `as_of`), changed only by a compare-and-set on `version` so that
the low event and the top-up request of a crossing come from one replica
(`services.sms_gateway.adapters.credit_store`)."""

unrouted_replies = sa.Table(
    "sms_unrouted_replies",
    metadata,
    sa.Column("event_key", sa.String(200), primary_key=True),
    sa.Column("provider", sa.String(16), nullable=False),
    # What the webhook said, as it said it: unbounded text, so nothing is cut or refused.
    sa.Column("account_id", sa.Text, nullable=True),
    sa.Column("to_number", sa.Text, nullable=False),
    sa.Column("from_number", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("in_reply_to", sa.Text, nullable=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("code", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_sms_unrouted_replies_recorded", "recorded_at"),
)
"""Replies that could not be attributed to one group without guessing (no opt-out was
applied); operators list them with `stagger replies unrouted`."""

tested_credentials = sa.Table(
    "sms_tested_credentials",
    metadata,
    sa.Column("site_id", sa.String(64), primary_key=True),
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("tested_at", sa.DateTime(timezone=True), nullable=False),
)
"""Provider credentials a provider test succeeded with, per site (a fingerprint of kind, base
URL, account id and secret, never the secret): only these verify Twilio webhooks."""
