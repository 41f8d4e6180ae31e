"""API token events (the ACCESS stream, one subject per token)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from shared.events.envelope import EventData
from shared.events.registry import registry

Role = Literal["group_admin", "site_manager", "auditor", "sender"]


@registry.register
class TokenIssued(EventData):
    """An API token was issued; only its hash is kept. From `expires_at` on (if set) it is
    refused. `user_id` marks a console session's token (v2)."""

    event_type = "stagger.access.token_issued"
    event_version = 2

    token_id: str
    group_id: str
    role: Role
    sites: list[str] = []
    label: str = ""
    secret_hash: str
    expires_at: datetime | None = None
    # Set for the token a console session holds on a staff user's behalf: events it causes
    # name the user, and the console's token list leaves it out.
    user_id: str | None = None


@registry.upcaster("stagger.access.token_issued", 1)
def _token_issued_v1(data: dict[str, Any]) -> dict[str, Any]:
    # v1 tokens were all issued by an operator for a machine or a person, never a session.
    return {**data, "user_id": None}


@registry.register
class TokenRevoked(EventData):
    """An API token was revoked; it is refused from now on."""

    event_type = "stagger.access.token_revoked"
    event_version = 1

    token_id: str
    group_id: str
    reason: str = ""
