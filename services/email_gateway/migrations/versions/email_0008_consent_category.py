"""Email gateway: each message's consent category (service, marketing, …).

Revision ID: email_0008
Revises: email_0006

Rows stored before it have none (null): they read as the default of their kind. The DDL is
written out here: a revision never reads the live table definitions.
"""

import sqlalchemy as sa
from alembic import op

revision = "email_0008"
down_revision = "email_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("email_messages", sa.Column("consent_category", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("email_messages") as batch:
        batch.drop_column("consent_category")
