"""API token events (the ACCESS stream, one subject per token)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from shared.events.envelope import EventData
from shared.events.registry import registry

Role = Literal["group_admin", "site_manager", "auditor", "sender"]


@registry.register
class TokenIssued(EventData):
    """An API token was issued; only its hash is kept. From `expires_at` on (if set) it is
    refused."""

    event_type = "stagger.access.token_issued"
    event_version = 1

    token_id: str
    group_id: str
    role: Role
    sites: list[str] = []
    label: str = ""
    secret_hash: str
    expires_at: datetime | None = None


@registry.register
class TokenRevoked(EventData):
    """An API token was revoked; it is refused from now on."""

    event_type = "stagger.access.token_revoked"
    event_version = 1

    token_id: str
    group_id: str
    reason: str = ""
