"""Email gateway: rotated OAuth refresh tokens, sealed, and Graph delta links.

Revision ID: email_0005
Revises: email_0004

The DDL is written out as it was released: a revision never reads the live table definitions.
"""

import sqlalchemy as sa
from alembic import op

revision = "email_0005"
down_revision = "email_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_oauth_refresh_tokens",
        sa.Column("chain", sa.String(64), primary_key=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("sealed", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "email_graph_delta",
        sa.Column("site_id", sa.String(63), primary_key=True),
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("delta_link", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("email_graph_delta")
    op.drop_table("email_oauth_refresh_tokens")
