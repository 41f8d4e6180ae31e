"""SMS gateway: the credit state shared by replicas (crossings, top-ups, ordering, CAS version).

Revision ID: sms_0006
Revises: sms_0005
"""

import sqlalchemy as sa
from alembic import op

revision = "sms_0006"
down_revision = "sms_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sms_accounts") as batch:
        batch.add_column(sa.Column("crossing", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("topup_crossing", sa.Integer, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("as_of", sa.Float, nullable=True))
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("sms_accounts") as batch:
        for column in ("version", "as_of", "topup_crossing", "crossing"):
            batch.drop_column(column)
