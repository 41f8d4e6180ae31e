"""Projection positions: how far each projection has applied its stream.

Revision ID: shared_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "shared_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projection_positions",
        sa.Column("projection", sa.String(200), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("projection_positions")
