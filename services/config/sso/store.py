"""A group's identity provider settings, kept as events on the ACCESS stream."""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client

from shared.bus import subjects
from shared.bus.topology import ACCESS
from shared.domain.oidc import Provider, provider_settings
from shared.events.envelope import make_event
from shared.events.schemas.sso import SsoConfigured, SsoRemoved, SsoSignInRefused
from shared.eventstore import EventStore
from shared.secrets import SecretBox


class SsoStore:
    """Reads and writes the single sign-on settings of groups."""

    def __init__(self, nc: Client, box: SecretBox) -> None:
        self.store = EventStore(nc, ACCESS)
        self.box = box

    async def get(self, group_id: str) -> Provider | None:
        """The group's provider (client secret still sealed), or None when SSO is off."""
        subjects.check_token(group_id, "group id")
        last = await self.store.last(subjects.access_sso(group_id))
        if last is None or not isinstance(last.data, SsoConfigured):
            return None
        d = last.data
        return Provider(
            d.group_id,
            d.preset,
            d.issuer,
            d.discovery_url,
            d.client_id,
            d.client_secret,
            d.allowed_domain,
        )

    async def configure(
        self,
        group_id: str,
        *,
        preset: str,
        client_id: str,
        client_secret: str | None,
        allowed_domain: str | None,
        tenant: str | None,
        discovery_url: str | None,
        actor: str,
    ) -> Provider:
        """Check, seal and record the group's provider (OidcConfigError names a bad field).

        An empty `client_secret` keeps the one already stored (a form never shows it back).
        """
        subjects.check_token(group_id, "group id")
        plaintext = (client_secret or "").strip()
        kept = None
        if not plaintext:
            current = await self.get(group_id)
            kept = current.client_secret if current else None
        settings: dict[str, Any] = {
            "preset": preset,
            "client_id": client_id,
            "allowed_domain": allowed_domain,
            "tenant": tenant,
            "discovery_url": discovery_url,
        }
        # Checked with a placeholder first, so nothing is sealed for settings that are refused.
        provider_settings(
            group_id, sealed_secret=kept or (plaintext and "enc:v1:check"), **settings
        )
        sealed = kept or self.box.seal(plaintext)
        provider = provider_settings(group_id, sealed_secret=sealed, **settings)
        data = SsoConfigured(
            group_id=group_id,
            preset=provider.preset,
            issuer=provider.issuer,
            discovery_url=provider.discovery_url,
            client_id=provider.client_id,
            client_secret=provider.client_secret,
            allowed_domain=provider.allowed_domain,
        )
        event = make_event(data, source="config", actor=actor, subject=group_id, group_id=group_id)
        await self.store.append(subjects.access_sso(group_id), event)
        return provider

    async def remove(self, group_id: str, *, actor: str) -> bool:
        """Turn the group's single sign-on off; False if it was not on."""
        if await self.get(group_id) is None:
            return False
        event = make_event(
            SsoRemoved(group_id=group_id),
            source="config",
            actor=actor,
            subject=group_id,
            group_id=group_id,
        )
        await self.store.append(subjects.access_sso(group_id), event)
        return True

    async def refused(self, group_id: str, email: str | None, reason: str) -> None:
        """Record a refused sign-in in the audit trail."""
        event = make_event(
            SsoSignInRefused(group_id=group_id, email=email, reason=reason),
            source="config",
            actor=f"sso:{group_id}",
            subject=group_id,
            group_id=group_id,
        )
        await self.store.append(subjects.access_sso_refusals(group_id), event)
