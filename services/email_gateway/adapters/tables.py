"""The email gateway's own tables, beside the shared dispatch tables (`email_messages`, …).

- `email_mailbox_cursors`: how far each site's mailbox has been read, per UIDVALIDITY.
- `email_inbound`: every inbound message recorded (its event id is the key, so a message is
  recorded once however often it is polled, by however many replicas).
- `email_attachments`: quarantined attachments and whether they were released.
- `email_account_status`: the last thing each SMTP/IMAP account did (for the settings page).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from shared.dispatch.schema import tables as dispatch_tables

metadata = sa.MetaData()
DISPATCH = dispatch_tables("email", metadata)


def _cursor_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("site_id", sa.String(63), primary_key=True),
        sa.Column("mailbox", sa.String(200), primary_key=True),
        sa.Column("uidvalidity", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("last_uid", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _inbound_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("group_id", sa.String(63), nullable=False),
        sa.Column("site_id", sa.String(63), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("mailbox", sa.String(200), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger, nullable=False),
        sa.Column("uid", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sender", sa.String(320), nullable=True),
        sa.Column("subject", sa.Text, nullable=True),
        sa.Column("internet_message_id", sa.String(998), nullable=True),
        sa.Column("matched_message_id", sa.String(64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _attachment_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("attachment_id", sa.String(64), primary_key=True),
        sa.Column("inbound_event_id", sa.String(64), nullable=False),
        sa.Column("group_id", sa.String(63), nullable=False),
        sa.Column("site_id", sa.String(63), nullable=False),
        sa.Column("filename", sa.Text, nullable=True),
        sa.Column("declared_type", sa.String(255), nullable=False),
        sa.Column("sniffed_type", sa.String(16), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("stored", sa.Boolean, nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(200), nullable=True),
    ]


def _status_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("code", sa.Integer, nullable=True),
        sa.Column("error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("group_id", sa.String(63), nullable=True),
        sa.Column("site_id", sa.String(63), nullable=True),
    ]


cursors = sa.Table("email_mailbox_cursors", metadata, *_cursor_columns())
inbound = sa.Table(
    "email_inbound",
    metadata,
    *_inbound_columns(),
    sa.Index("ix_email_inbound_site", "site_id", "recorded_at"),
)
attachments = sa.Table(
    "email_attachments",
    metadata,
    *_attachment_columns(),
    sa.Index("ix_email_attachments_site", "site_id"),
)
account_status = sa.Table("email_account_status", metadata, *_status_columns())
