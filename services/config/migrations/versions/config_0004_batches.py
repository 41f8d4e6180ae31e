"""Config read model: batches (one per submission), each message's state by batch, and
messages sent per site and hour.

Revision ID: config_0004
Revises: config_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "config_0004"
down_revision = "config_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "config_batches",
        sa.Column("batch_id", sa.String(64), primary_key=True),
        sa.Column("group_id", sa.String(63), nullable=False),
        sa.Column("site_id", sa.String(63), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("total", sa.Integer, nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_by", sa.String(200), nullable=True),
    )
    op.create_index("ix_config_batches_site", "config_batches", ["site_id", "submitted_at"])
    op.create_table(
        "config_batch_messages",
        sa.Column("site_id", sa.String(63), primary_key=True),
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_config_batch_messages_batch", "config_batch_messages", ["batch_id", "state"]
    )
    op.create_table(
        "config_sent_hours",
        sa.Column("site_id", sa.String(63), primary_key=True),
        sa.Column("channel", sa.String(8), primary_key=True),
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("sent", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("config_sent_hours")
    op.drop_index("ix_config_batch_messages_batch", "config_batch_messages")
    op.drop_table("config_batch_messages")
    op.drop_index("ix_config_batches_site", "config_batches")
    op.drop_table("config_batches")
