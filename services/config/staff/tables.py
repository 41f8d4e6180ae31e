"""The staff tables as SQLAlchemy Core objects (created by migration config_0003)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
_TS = sa.DateTime(timezone=True)

users = sa.Table(
    "staff_users",
    metadata,
    sa.Column("user_id", sa.String(32), primary_key=True),
    sa.Column("group_id", sa.String(63), nullable=False),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("sites", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(200)),
    # Sealed with the service's SecretBox: a copy of the database alone yields no TOTP secret.
    sa.Column("totp_secret", sa.Text),
    sa.Column("totp_pending", sa.Text),
    sa.Column("totp_last_step", sa.BigInteger),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
    sa.Index("ix_staff_users_group_id", "group_id"),
)

invitations = sa.Table(
    "staff_invitations",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(32), nullable=False),
    sa.Column("expires_at", _TS, nullable=False),
    sa.Column("used_at", _TS),
    sa.Column("created_at", _TS, nullable=False),
    sa.Index("ix_staff_invitations_user_id", "user_id"),
)

sessions = sa.Table(
    "staff_sessions",
    metadata,
    sa.Column("session_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(32), nullable=False),
    sa.Column("group_id", sa.String(63), nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("client", sa.String(64)),
    sa.Column("api_token_id", sa.String(32), nullable=False),
    sa.Column("api_token", sa.Text, nullable=False),  # sealed
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("expires_at", _TS, nullable=False),
    sa.Index("ix_staff_sessions_user_id", "user_id"),
)

failures = sa.Table(
    "staff_sign_in_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("key", sa.String(320), nullable=False),
    sa.Column("at", _TS, nullable=False),
    sa.Index("ix_staff_sign_in_failures_key", "scope", "key", "at"),
)

token_usage = sa.Table(
    "api_token_usage",
    metadata,
    sa.Column("token_id", sa.String(32), primary_key=True),
    sa.Column("last_used_at", _TS, nullable=False),
)
