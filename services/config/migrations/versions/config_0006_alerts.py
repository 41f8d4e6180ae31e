"""Config read model: alerts to group admins (each condition's state, the alert events waiting
to be published and emailed, and who was emailed about which).

Revision ID: config_0006
Revises: config_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "config_0006"
down_revision = "config_0004"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "config_alerts",
        sa.Column("group_id", sa.String(63), primary_key=True),
        sa.Column("kind", sa.String(24), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("alert_id", sa.String(64), nullable=True),
        sa.Column("site_id", sa.String(63), nullable=True),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("topup_url", sa.String(500), nullable=True),
        sa.Column("threshold", sa.Float, nullable=True),
        sa.Column("raised_at", _TS, nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_index("ix_config_alerts_group_active", "config_alerts", ["group_id", "active"])
    op.create_table(
        "config_alert_outbox",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("group_id", sa.String(63), nullable=False),
        sa.Column("alert_id", sa.String(64), nullable=False),
        sa.Column("transition", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("site_id", sa.String(63), nullable=True),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("topup_url", sa.String(500), nullable=True),
        sa.Column("cause_event_id", sa.String(64), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("published_at", _TS, nullable=True),
        sa.Column("emailed_at", _TS, nullable=True),
    )
    op.create_index(
        "ix_config_alert_outbox_pending", "config_alert_outbox", ["emailed_at", "created_at"]
    )
    op.create_table(
        "config_alert_emails",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("recipient", sa.String(320), primary_key=True),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("sent_at", _TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("config_alert_emails")
    op.drop_index("ix_config_alert_outbox_pending", "config_alert_outbox")
    op.drop_table("config_alert_outbox")
    op.drop_index("ix_config_alerts_group_active", "config_alerts")
    op.drop_table("config_alerts")
