"""Email gateway: mailbox cursors, inbound messages, quarantined attachments, account status.

Revision ID: email_0002
Revises: email_0001
"""

from alembic import op

from services.email_gateway.adapters.tables import create_tables_v2

revision = "email_0002"
down_revision = "email_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_tables_v2(op)


def downgrade() -> None:
    for table in (
        "email_account_status",
        "email_attachments",
        "email_inbound",
        "email_mailbox_cursors",
    ):
        op.drop_table(table)
