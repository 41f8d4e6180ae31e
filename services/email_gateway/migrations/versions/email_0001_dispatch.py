"""Email gateway: queue/ledger, pending events, account limiters.

Revision ID: email_0001
Revises:

The DDL is written out as it was released: a revision never reads the live table definitions,
so changing them later cannot change what this revision did.
"""

import sqlalchemy as sa
from alembic import op

revision = "email_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_messages",
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("group_id", sa.String(63), nullable=False),
        sa.Column("site_id", sa.String(63), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
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
        sa.Column("traceparent", sa.String(64), nullable=True),
    )
    for name, columns in {
        "ix_email_messages_claim": ["site_id", "state", "accepted_at"],
        "ix_email_messages_state_lease": ["state", "lease_until"],
        "ix_email_messages_account_sent": ["account", "sent_at"],
        "ix_email_messages_recipient": ["group_id", "recipient", "state"],
        "ix_email_messages_provider_id": ["provider_message_id"],
    }.items():
        op.create_index(name, "email_messages", columns)
    op.create_table(
        "email_pending_events",
        sa.Column("event_id", sa.String(80), primary_key=True),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "email_limiters",
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("tat", sa.DateTime(timezone=True), nullable=True),
        sa.Column("held", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("held_reason", sa.Text, nullable=True),
        sa.Column("balance", sa.Float, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    for table in ("email_limiters", "email_pending_events", "email_messages"):
        op.drop_table(table)
