"""Email gateway: index of finished messages by age, for the retention job.

Revision ID: email_0003
Revises: email_0002
"""

from alembic import op

from shared.dispatch.schema import create_finished_index, drop_finished_index

revision = "email_0003"
down_revision = "email_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_finished_index(op, "email")


def downgrade() -> None:
    drop_finished_index(op, "email")
