"""Email gateway: index of finished messages by age, for the retention job.

Revision ID: email_0003
Revises: email_0002
"""

from alembic import op

revision = "email_0003"
down_revision = "email_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_email_messages_finished", "email_messages", ["state", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_email_messages_finished", "email_messages")
