"""SMS gateway: queue/ledger, pending events, account limiters.

Revision ID: sms_0001
Revises:
"""

from alembic import op

from shared.dispatch.schema import create_tables_v1

revision = "sms_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_tables_v1(op, "sms")


def downgrade() -> None:
    for table in ("sms_limiters", "sms_pending_events", "sms_messages"):
        op.drop_table(table)
