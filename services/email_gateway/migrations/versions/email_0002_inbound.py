"""Email gateway: mailbox cursors, inbound messages, quarantined attachments, account status.

Revision ID: email_0002
Revises: email_0001

The DDL is written out as it was released: a revision never reads the live table definitions.
"""

import sqlalchemy as sa
from alembic import op

revision = "email_0002"
down_revision = "email_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_mailbox_cursors",
        sa.Column("site_id", sa.String(63), primary_key=True),
        sa.Column("mailbox", sa.String(200), primary_key=True),
        sa.Column("uidvalidity", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("last_uid", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "email_inbound",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("group_id", sa.String(63), nullable=False),
        sa.Column("site_id", sa.String(63), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("mailbox", sa.String(200), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger, nullable=False),
        sa.Column("uid", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sender", sa.String(320), nullable=True),
        sa.Column("subject", sa.Text, nullable=True),
        sa.Column("internet_message_id", sa.String(998), nullable=True),
        sa.Column("matched_message_id", sa.String(64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_email_inbound_site", "email_inbound", ["site_id", "recorded_at"])
    op.create_table(
        "email_attachments",
        sa.Column("attachment_id", sa.String(64), primary_key=True),
        sa.Column("inbound_event_id", sa.String(64), nullable=False),
        sa.Column("group_id", sa.String(63), nullable=False),
        sa.Column("site_id", sa.String(63), nullable=False),
        sa.Column("filename", sa.Text, nullable=True),
        sa.Column("declared_type", sa.String(255), nullable=False),
        sa.Column("sniffed_type", sa.String(16), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("stored", sa.Boolean, nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(200), nullable=True),
    )
    op.create_index("ix_email_attachments_site", "email_attachments", ["site_id"])
    op.create_table(
        "email_account_status",
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("code", sa.Integer, nullable=True),
        sa.Column("error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("group_id", sa.String(63), nullable=True),
        sa.Column("site_id", sa.String(63), nullable=True),
    )


def downgrade() -> None:
    for table in (
        "email_account_status",
        "email_attachments",
        "email_inbound",
        "email_mailbox_cursors",
    ):
        op.drop_table(table)
