"""SMS gateway: credentials a provider test succeeded with (they alone verify Twilio webhooks).

Revision ID: sms_0005
Revises: sms_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "sms_0005"
down_revision = "sms_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sms_tested_credentials",
        sa.Column("site_id", sa.String(64), primary_key=True),
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("tested_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sms_tested_credentials")
