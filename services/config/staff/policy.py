"""The staff settings in one place: session and invitation lifetimes, sign-in limits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from services.config.staff.throttle import Limit
from shared.config import StaggerConfig


@dataclass(frozen=True)
class StaffPolicy:
    """How long things last and how many failures are allowed."""

    session: timedelta
    invitation: timedelta
    account: Limit
    client: Limit

    @classmethod
    def from_config(cls, settings: StaggerConfig) -> StaffPolicy:
        """From the `STAGGER_STAFF_*` and `STAGGER_SIGNIN_*` settings."""
        window = timedelta(minutes=settings.signin_window_minutes)
        return cls(
            session=timedelta(hours=settings.staff_session_hours),
            invitation=timedelta(hours=settings.staff_invitation_hours),
            account=Limit(settings.signin_account_failures, window),
            client=Limit(settings.signin_client_failures, window),
        )
