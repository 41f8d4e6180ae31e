"""SMS gateway: replies no group could be named for, waiting for an operator.

Revision ID: sms_0004
Revises: sms_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "sms_0004"
down_revision = "sms_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sms_unrouted_replies",
        sa.Column("event_key", sa.String(200), primary_key=True),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("account_id", sa.Text, nullable=True),
        sa.Column("to_number", sa.Text, nullable=False),
        sa.Column("from_number", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("in_reply_to", sa.Text, nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sms_unrouted_replies_recorded", "sms_unrouted_replies", ["recorded_at"])


def downgrade() -> None:
    op.drop_index("ix_sms_unrouted_replies_recorded", "sms_unrouted_replies")
    op.drop_table("sms_unrouted_replies")
