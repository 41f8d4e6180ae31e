"""Single sign-on settings and refusals (the ACCESS stream, one subject per group).

A group's identity provider is kept as events so every config replica reads the same settings
and the audit trail shows who changed them. The client secret is sealed (`enc:v1:…`) before it
enters an event, like every other secret.
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from shared.events.envelope import EventData
from shared.events.registry import registry


@registry.register
class SsoConfigured(EventData):
    """A group's OpenID Connect provider was set (or changed); its staff may sign in with it."""

    event_type = "stagger.access.sso_configured"
    event_version = 1

    group_id: str
    preset: Literal["entra", "google", "generic"]
    issuer: str
    discovery_url: str
    client_id: str
    client_secret: str
    allowed_domain: str | None = None

    @field_validator("client_secret")
    @classmethod
    def _sealed(cls, value: str) -> str:
        if not value.startswith("enc:v1:"):
            raise ValueError("the client secret is stored sealed; a plaintext value reached it")
        return value


@registry.register
class SsoRemoved(EventData):
    """A group's OpenID Connect sign-in was turned off."""

    event_type = "stagger.access.sso_removed"
    event_version = 1

    group_id: str


@registry.register
class SsoSignInRefused(EventData):
    """The group's provider vouched for someone who may not sign in (the reason says why:
    unknown, other_group, disabled, email_unverified, domain, hosted_domain, no_email)."""

    event_type = "stagger.access.sso_sign_in_refused"
    event_version = 1

    group_id: str
    email: str | None = None
    reason: str
