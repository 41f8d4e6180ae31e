"""Email gateway: soft bounces counted per (group, address) toward the suppression threshold.

Revision ID: email_0006
Revises: email_0005

The DDL is written out as it was released: a revision never reads the live table definitions.
"""

import sqlalchemy as sa
from alembic import op

revision = "email_0006"
down_revision = "email_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_soft_bounces",
        sa.Column("group_id", sa.String(63), primary_key=True),
        sa.Column("recipient", sa.String(320), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("last_status", sa.String(32), nullable=True),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("email_soft_bounces")
