"""SMS gateway: index of finished messages by age, for the retention job.

Revision ID: sms_0003
Revises: sms_0002
"""

from alembic import op

from shared.dispatch.schema import create_finished_index, drop_finished_index

revision = "sms_0003"
down_revision = "sms_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_finished_index(op, "sms")


def downgrade() -> None:
    drop_finished_index(op, "sms")
