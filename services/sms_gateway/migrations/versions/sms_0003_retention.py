"""SMS gateway: index of finished messages by age, for the retention job.

Revision ID: sms_0003
Revises: sms_0002
"""

from alembic import op

revision = "sms_0003"
down_revision = "sms_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sms_messages_finished", "sms_messages", ["state", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_sms_messages_finished", "sms_messages")
