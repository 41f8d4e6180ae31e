"""Email gateway: rotated OAuth refresh tokens, sealed, and Graph delta links (issue 19).

Revision ID: email_0005
Revises: email_0004
"""

from alembic import op

from services.email_gateway.graph.receiver import create_table as create_delta_table
from services.email_gateway.oauth_tokens import create_table

revision = "email_0005"
down_revision = "email_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_table(op)
    create_delta_table(op)


def downgrade() -> None:
    op.drop_table("email_graph_delta")
    op.drop_table("email_oauth_refresh_tokens")
