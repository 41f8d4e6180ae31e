"""Invitation links (pure): one-time, expiring, kept only as a hash."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta


def new_secret() -> str:
    """The secret part of an invitation or session link (256 random bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """Stored form of a high-entropy secret (a slow hash adds nothing at 256 bits)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def expires_at(now: datetime, lifetime: timedelta) -> datetime:
    """When an invitation made `now` stops working."""
    if lifetime <= timedelta(0):
        raise ValueError("an invitation's lifetime must be positive")
    return now + lifetime


def usable(expires: datetime, used_at: datetime | None, now: datetime) -> str | None:
    """None if the invitation may be accepted now, else why not."""
    if used_at is not None:
        return "This invitation has already been used."
    if now >= expires:
        return "This invitation has expired; ask your group admin for a new one."
    return None
