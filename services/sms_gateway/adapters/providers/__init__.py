"""SMS provider adapters behind one interface (`base.Provider`), built from a site's settings.

`settings.sms.provider.kind` chooses the adapter: `simulator` (account_id = simulator account,
secret = API key), `twilio` (account_id = Account SID, secret = Auth Token), or one of
`catalogue.BUILDERS`, each built from one `catalogue.BuildArgs`. The secret is
stored sealed in the settings events and opened here, never logged.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

import httpx

from services.sms_gateway.adapters.providers import catalogue
from services.sms_gateway.adapters.providers.base import (
    Balance,
    Found,
    Outbound,
    Provider,
    SendReply,
)
from services.sms_gateway.adapters.providers.simulator import SimulatorProvider
from services.sms_gateway.adapters.providers.twilio import TwilioProvider
from shared.secrets import SecretBox, SecretKeyError
from shared.sites import Site

MAX_CACHED = 1000


class NotConfigured(Exception):
    """The site's SMS provider cannot be used as configured; the message says why."""


@dataclass(frozen=True)
class ProviderSpec:
    """What it takes to build one provider adapter: picklable, for the send process."""

    kind: str
    account_id: str
    secret: str = field(repr=False)  # opened: never logged, never put in an event
    base_url: str | None
    rate_per_second: float
    status_callback: str | None
    report_lag_seconds: float = 120.0

    def build(self, client: httpx.AsyncClient) -> Provider:
        """The adapter, making its calls with `client`."""
        if self.kind == "simulator":
            return SimulatorProvider(
                client,
                api_key=self.secret,
                base_url=self.base_url,
                rate_per_second=self.rate_per_second,
            )
        if self.kind == "twilio":
            return TwilioProvider(
                client,
                account_sid=self.account_id,
                auth_token=self.secret,
                base_url=self.base_url,
                rate_per_second=self.rate_per_second,
                status_callback=self.status_callback,
            )
        builder = catalogue.BUILDERS.get(self.kind)
        if builder is not None:
            return builder(
                catalogue.BuildArgs(
                    client=client,
                    account_id=self.account_id,
                    secret=self.secret,
                    base_url=self.base_url,
                    rate_per_second=self.rate_per_second,
                    report_lag=timedelta(seconds=self.report_lag_seconds),
                )
            )
        raise NotConfigured(f"unknown SMS provider kind {self.kind!r}")


class SendChannel(Protocol):
    """Somewhere else to make `send` calls (the send process)."""

    async def send(self, spec: ProviderSpec, message: Outbound) -> SendReply:
        """The provider's answer to one send (never raises)."""


class SendsElsewhere:
    """An adapter whose sends go through a `SendChannel`; everything else stays here."""

    def __init__(self, local: Provider, spec: ProviderSpec, channel: SendChannel) -> None:
        self._local = local
        self._spec = spec
        self._channel = channel
        self.kind = local.kind
        self.unit = local.unit
        self.max_body_chars = local.max_body_chars
        self.max_recipients_per_call = local.max_recipients_per_call
        self.supports_topup = local.supports_topup
        self.needs_sender = local.needs_sender
        self.rate_per_second = local.rate_per_second

    async def send(self, message: Outbound) -> SendReply:
        """Through the channel."""
        return await self._channel.send(self._spec, message)

    async def lookup(self, message: Outbound, taken: Collection[str] = ()) -> Found:
        """Here (rare: only for uncertain sends)."""
        return await self._local.lookup(message, taken)

    async def balance(self) -> Balance:
        """Here."""
        return await self._local.balance()

    async def topup(self, amount: float) -> Balance:
        """Here."""
        return await self._local.topup(amount)


class Providers:
    """One adapter per distinct provider configuration, sharing one HTTP client; with a
    `sends` channel, their sends go through it."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        box: SecretBox,
        *,
        twilio_status_callback: str | None,
        sends: SendChannel | None = None,
        simulator_enabled: bool = False,
        report_lag_seconds: float = 120.0,
    ) -> None:
        self.client = client
        self._report_lag_seconds = report_lag_seconds
        self._simulator_enabled = simulator_enabled
        self._sends = sends
        self._box = box
        self._twilio_callback = twilio_status_callback
        self._cache: dict[tuple[object, ...], Provider] = {}

    def for_site(self, site: Site) -> Provider:
        """The adapter of the site's provider account, or NotConfigured."""
        p = site.settings.sms.provider
        if p.kind == "none":
            raise NotConfigured("SMS is off for the site (provider 'none')")
        if p.kind == "simulator" and not self._simulator_enabled:
            raise NotConfigured(
                "the SMS provider simulator is not enabled on this deployment "
                "(STAGGER_SMS_SIMULATOR_ENABLED)"
            )
        if not p.account_id or not p.secret:
            raise NotConfigured("the SMS provider's account id or secret is not set")
        # The group is part of the key as it is of the account id: one group's adapter is
        # never handed to another's sites, whatever they typed.
        key = (site.group_id, p.kind, p.account_id, p.secret, p.base_url, p.rate_per_second)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        spec = ProviderSpec(
            kind=p.kind,
            account_id=p.account_id,
            secret=self._open(p.secret),
            base_url=p.base_url,
            rate_per_second=p.rate_per_second,
            status_callback=self._twilio_callback,
            report_lag_seconds=self._report_lag_seconds,
        )
        provider = spec.build(self.client)
        if self._sends is not None:
            provider = SendsElsewhere(provider, spec, self._sends)
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[key] = provider
        return provider

    def _open(self, sealed: str) -> str:
        try:
            return self._box.open(sealed)
        except SecretKeyError as exc:
            raise NotConfigured(f"the SMS provider's secret cannot be opened: {exc}") from exc
