"""Staff account events (the ACCESS stream, one subject per user: `access.user.<user id>`).

They record who changed which account and how; never a password, a TOTP secret, an
invitation link or a session id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from shared.events.envelope import EventData
from shared.events.registry import registry

StaffRole = Literal["group_admin", "site_manager", "auditor"]


@registry.register
class StaffInvited(EventData):
    """A group admin invited someone by email; the link works until `expires_at`, once."""

    event_type = "stagger.staff.invited"
    event_version = 1

    user_id: str
    group_id: str
    email: str
    role: StaffRole
    sites: list[str] = []
    expires_at: datetime
    sent_via: Literal["group_account", "smtp_sink", "none"] = "none"


@registry.register
class StaffActivated(EventData):
    """An invited user accepted the invitation and set a password (and TOTP if required)."""

    event_type = "stagger.staff.activated"
    event_version = 1

    user_id: str
    group_id: str
    totp: bool = False


@registry.register
class StaffRoleChanged(EventData):
    """A group admin changed a user's role or sites."""

    event_type = "stagger.staff.role_changed"
    event_version = 1

    user_id: str
    group_id: str
    role: StaffRole
    sites: list[str] = []
    old_role: StaffRole
    old_sites: list[str] = []


@registry.register
class StaffDisabled(EventData):
    """A group admin disabled a user; their sessions ended at once."""

    event_type = "stagger.staff.disabled"
    event_version = 1

    user_id: str
    group_id: str
    reason: str = ""


@registry.register
class StaffTotpEnrolled(EventData):
    """A user confirmed a new TOTP authenticator."""

    event_type = "stagger.staff.totp_enrolled"
    event_version = 1

    user_id: str
    group_id: str


@registry.register
class StaffSignedIn(EventData):
    """A user signed in to the console (`method`: how they proved who they are)."""

    event_type = "stagger.staff.signed_in"
    event_version = 1

    user_id: str
    group_id: str
    method: Literal["password_totp", "password", "oidc"]
    client: str | None = None


@registry.register
class StaffSessionsEnded(EventData):
    """Every console session of a user ended (sign out everywhere, disabling, a role change)."""

    event_type = "stagger.staff.sessions_ended"
    event_version = 1

    user_id: str
    group_id: str
    reason: Literal["sign_out_everywhere", "disabled", "role_changed"]
    sessions: int = 0
