"""Scheduler projection: every site's effective settings.

Revision ID: scheduler_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "scheduler_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduler_sites",
        sa.Column("site_id", sa.String(63), primary_key=True),
        sa.Column("group_id", sa.String(63), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_scheduler_sites_version", "scheduler_sites", ["version"])


def downgrade() -> None:
    op.drop_table("scheduler_sites")
