"""The batch read model's tables (on the config read model's metadata, so its migrations and
the schema drift test see them once this module is imported)."""

from __future__ import annotations

import sqlalchemy as sa

from services.config.adapters.read_model import metadata

batches = sa.Table(
    "config_batches",
    metadata,
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("group_id", sa.String(63), nullable=False),
    sa.Column("site_id", sa.String(63), nullable=False),
    sa.Column("channel", sa.String(8), nullable=False),
    # None for a batch only seen on the bus (a producer publishing to the outbox directly).
    sa.Column("total", sa.Integer, nullable=True),
    sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("submitted_by", sa.String(200), nullable=True),
    sa.Index("ix_config_batches_site", "site_id", "submitted_at"),
)

batch_messages = sa.Table(
    "config_batch_messages",
    metadata,
    sa.Column("site_id", sa.String(63), primary_key=True),
    sa.Column("message_id", sa.String(64), primary_key=True),
    sa.Column("batch_id", sa.String(64), nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_config_batch_messages_batch", "batch_id", "state"),
)

sent_hours = sa.Table(
    "config_sent_hours",
    metadata,
    # Every message sent, whether or not it came in a batch, counted per site and UTC hour (so
    # any time zone's "today" is a sum of whole hours).
    sa.Column("site_id", sa.String(63), primary_key=True),
    sa.Column("channel", sa.String(8), primary_key=True),
    sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("sent", sa.Integer, nullable=False),
)
