"""Audit trail, chain heads, message read model.

Revision ID: audit_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "audit_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.String(80), nullable=False, unique=True),
        sa.Column("type", sa.String(120), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(320), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("time", sa.String(40), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("group_id", sa.String(63), nullable=True),
        sa.Column("site_id", sa.String(63), nullable=True),
        sa.Column("message_id", sa.String(64), nullable=True),
        sa.Column("correlation_id", sa.String(200), nullable=True),
        sa.Column("origin_stream", sa.String(40), nullable=True),
        sa.Column("origin_sequence", sa.BigInteger, nullable=True),
        sa.Column("nats_subject", sa.String(300), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("chain", sa.String(63), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    for name, columns in {
        "ix_audit_records_group_pos": ["group_id", "position"],
        "ix_audit_records_site_pos": ["site_id", "position"],
        "ix_audit_records_message": ["message_id"],
    }.items():
        op.create_index(name, "audit_records", columns)
    op.create_table(
        "audit_chain_heads",
        sa.Column("chain", sa.String(63), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "audit_messages",
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("group_id", sa.String(63), nullable=True),
        sa.Column("site_id", sa.String(63), nullable=True),
        sa.Column("channel", sa.String(8), nullable=True),
        sa.Column("recipient", sa.String(320), nullable=True),
        sa.Column("category", sa.String(32), nullable=True),
        sa.Column("state", sa.String(16), nullable=True),
        sa.Column("receipt", sa.String(16), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=True),
        sa.Column("retry_of", sa.String(64), nullable=True),
        sa.Column("queued_at", sa.String(40), nullable=True),
        sa.Column("sent_at", sa.String(40), nullable=True),
        sa.Column("retry_at", sa.String(40), nullable=True),
        sa.Column("updated_at", sa.String(40), nullable=True),
        sa.Column("last_position", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_audit_messages_site_state", "audit_messages", ["site_id", "state"])


def downgrade() -> None:
    for table in ("audit_messages", "audit_chain_heads", "audit_records"):
        op.drop_table(table)
