"""SMS gateway: webhook de-duplication, provider account state, replies matched by number.

Revision ID: sms_0002
Revises: sms_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "sms_0002"
down_revision = "sms_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sms_webhook_events",
        sa.Column("event_key", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "sms_accounts",
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("balance", sa.Float, nullable=True),
        sa.Column("unit", sa.String(8), nullable=True),
        sa.Column("low", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("required", sa.Float, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
    )
    # A reply is matched to the latest message sent to its number.
    op.create_index("ix_sms_messages_recipient_sent", "sms_messages", ["recipient", "sent_at"])


def downgrade() -> None:
    op.drop_index("ix_sms_messages_recipient_sent", "sms_messages")
    op.drop_table("sms_accounts")
    op.drop_table("sms_webhook_events")
