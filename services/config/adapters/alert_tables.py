"""The alert tables (on the config read model's metadata, created by migration config_0006):
each condition's state, the alert events waiting to be published and emailed, and who has
been emailed about which event."""

from __future__ import annotations

import sqlalchemy as sa

from services.config.adapters.read_model import metadata

_TS = sa.DateTime(timezone=True)

alert_states = sa.Table(
    "config_alerts",
    metadata,
    sa.Column("group_id", sa.String(63), primary_key=True),
    sa.Column("kind", sa.String(24), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("alert_id", sa.String(64), nullable=True),
    sa.Column("site_id", sa.String(63), nullable=True),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("topup_url", sa.String(500), nullable=True),
    # The low-credit level that raised a low-credit alert (a balance at it clears the alert).
    sa.Column("threshold", sa.Float, nullable=True),
    sa.Column("raised_at", _TS, nullable=True),
    sa.Column("updated_at", _TS, nullable=False),
    sa.Index("ix_config_alerts_group_active", "group_id", "active"),
)

alert_outbox = sa.Table(
    "config_alert_outbox",
    metadata,
    # The alert event's id (its Nats-Msg-Id, so a publish retried after a crash is stored once).
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
    sa.Index("ix_config_alert_outbox_pending", "emailed_at", "created_at"),
)

alert_emails = sa.Table(
    "config_alert_emails",
    metadata,
    # One row per alert event and recipient: written once the SMTP server took the message,
    # so a restart never emails anyone twice about the same change.
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("recipient", sa.String(320), primary_key=True),
    sa.Column("via", sa.String(16), nullable=False),
    sa.Column("sent_at", _TS, nullable=False),
)
