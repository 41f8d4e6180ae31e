"""Rotated OAuth refresh tokens, kept sealed in the gateway's database (issue 19).

A server that rotates refresh tokens invalidates the old one on use, so the newest must
survive a restart (and be shared by every replica, and by a site's SMTP and IMAP accounts).
Rows are keyed by the chain: a digest of the sign-in settings, configured refresh token
included. An admin who consents again (a new configured token) starts a new chain.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.email_gateway.adapters.tables import metadata
from shared.email_auth.credentials import OAuthCredentials
from shared.secrets import SecretBox

refresh_tokens = sa.Table(
    "email_oauth_refresh_tokens",
    metadata,
    sa.Column("chain", sa.String(64), primary_key=True),
    sa.Column("account", sa.String(64), nullable=False),
    sa.Column("sealed", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


class RefreshTokenStore:
    """Loads and saves the latest refresh token of each account, sealed."""

    def __init__(self, db: async_sessionmaker[AsyncSession], box: SecretBox) -> None:
        self.db = db
        self.box = box

    async def load(self, creds: OAuthCredentials) -> str | None:
        """The newest rotated token of the chain these settings started, or None."""
        t = refresh_tokens
        async with self.db() as session:
            row = (
                await session.execute(sa.select(t.c.sealed).where(t.c.chain == creds.fingerprint))
            ).first()
        return self.box.open(row.sealed) if row is not None else None

    async def save(self, creds: OAuthCredentials, token: str) -> None:
        """Keep a rotated token (replacing the chain's previous one)."""
        t = refresh_tokens
        values = {
            "account": creds.account,
            "sealed": self.box.seal(token),
            "updated_at": datetime.now(UTC),
        }
        async with self.db() as session, session.begin():
            updated = await session.execute(
                sa.update(t).where(t.c.chain == creds.fingerprint).values(**values)
            )
            if not updated.rowcount:  # type: ignore[attr-defined]
                await session.execute(sa.insert(t).values(chain=creds.fingerprint, **values))
