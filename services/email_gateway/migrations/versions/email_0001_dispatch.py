"""Email gateway: queue/ledger, pending events, account limiters.

Revision ID: email_0001
Revises:
"""

from alembic import op

from shared.dispatch.schema import create_tables_v1

revision = "email_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_tables_v1(op, "email")


def downgrade() -> None:
    for table in ("email_limiters", "email_pending_events", "email_messages"):
        op.drop_table(table)
