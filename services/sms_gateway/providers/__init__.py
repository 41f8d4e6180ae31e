"""SMS provider adapters behind one interface (`base.Provider`), built from a site's settings.

`settings.sms.provider.kind` chooses the adapter: `simulator` (account_id = simulator account,
secret = API key) or `twilio` (account_id = Account SID, secret = Auth Token). The secret is
stored sealed in the settings events and opened here, never logged.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx

from services.sms_gateway.providers.base import Provider
from services.sms_gateway.providers.simulator import SimulatorProvider
from services.sms_gateway.providers.twilio import TwilioProvider
from shared.secrets import SecretBox, SecretKeyError
from shared.sites import Site

MAX_CACHED = 1000


class NotConfigured(Exception):
    """The site's SMS provider cannot be used as configured; the message says why."""


class Providers:
    """One adapter per distinct provider configuration, sharing one HTTP client."""

    def __init__(
        self, client: httpx.AsyncClient, box: SecretBox, *, twilio_status_callback: str | None
    ) -> None:
        self.client = client
        self._box = box
        self._twilio_callback = twilio_status_callback
        self._cache: dict[tuple[object, ...], Provider] = {}

    def for_site(self, site: Site) -> Provider:
        """The adapter of the site's provider account, or NotConfigured."""
        p = site.settings.sms.provider
        if p.kind == "none":
            raise NotConfigured("SMS is off for the site (provider 'none')")
        if not p.account_id or not p.secret:
            raise NotConfigured("the SMS provider's account id or secret is not set")
        key = (p.kind, p.account_id, p.secret, p.base_url, p.rate_per_second)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        secret = self._open(p.secret)
        provider: Provider
        if p.kind == "simulator":
            provider = SimulatorProvider(
                self.client, api_key=secret, base_url=p.base_url, rate_per_second=p.rate_per_second
            )
        else:
            provider = TwilioProvider(
                self.client,
                account_sid=p.account_id,
                auth_token=secret,
                base_url=p.base_url,
                rate_per_second=p.rate_per_second,
                status_callback=self._twilio_callback,
            )
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[key] = provider
        return provider

    def twilio_tokens(self, account_sid: str, sites: Iterable[Site]) -> list[str]:
        """Auth Tokens configured for a Twilio Account SID (to check its webhooks)."""
        sealed = {
            s.settings.sms.provider.secret
            for s in sites
            if s.settings.sms.provider.kind == "twilio"
            and s.settings.sms.provider.account_id == account_sid
            and s.settings.sms.provider.secret
        }
        tokens = []
        for value in sorted(v for v in sealed if v):
            try:
                tokens.append(self._open(value))
            except NotConfigured:
                continue
        return tokens

    def _open(self, sealed: str) -> str:
        try:
            return self._box.open(sealed)
        except SecretKeyError as exc:
            raise NotConfigured(f"the SMS provider's secret cannot be opened: {exc}") from exc
