"""Config read model: patient SMS replies with whether staff handled or answered them.

Revision ID: config_0007
Revises: config_0006
"""

import sqlalchemy as sa
from alembic import op

revision = "config_0007"
down_revision = "config_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "config_replies",
        sa.Column("reply_id", sa.String(64), primary_key=True),
        sa.Column("group_id", sa.String(63), nullable=False),
        sa.Column("site_id", sa.String(63), nullable=False),
        sa.Column("from_number", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("keyword", sa.String(64), nullable=True),
        sa.Column("meaning", sa.String(64), nullable=True),
        sa.Column("in_reply_to", sa.String(64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("handled_by", sa.String(200), nullable=True),
        sa.Column("answered", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_answer", sa.Text, nullable=True),
        sa.Column("last_answer_message_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_config_replies_site", "config_replies", ["site_id", "received_at"])
    op.create_index(
        "ix_config_replies_unread", "config_replies", ["group_id", "kind", "handled_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_config_replies_unread", "config_replies")
    op.drop_index("ix_config_replies_site", "config_replies")
    op.drop_table("config_replies")
