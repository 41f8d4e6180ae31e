"""The config service's "Test" button: check a site's provider credentials, report the balance
(and, where the site names a secondary account, the secondary's under `secondary`).

The provider gets `PROVIDER_TEST_SECONDS` of the 15 s the config service waits. A successful
test is recorded (`trust_store`) before the answer: once the config service hears "ok",
webhooks signed with these credentials verify on every replica.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from services.sms_gateway.adapters.outbox import GatewayEvents
from services.sms_gateway.adapters.providers import NotConfigured, Providers
from services.sms_gateway.adapters.providers.base import Balance, ProviderError
from services.sms_gateway.adapters.trust_store import Trust
from services.sms_gateway.handlers.channel import failover_site
from services.sms_gateway.handlers.credits import Credits
from shared.bus import subjects
from shared.events.schemas.providers import ProviderTested
from shared.sites import Site, SiteDirectory

PROVIDER_TEST_SECONDS = 12.0
"""The config service waits 15 s for the answer; the provider gets 12 of them."""
SITE_PATIENCE_SECONDS = 3.0
"""A site created a moment ago may not have reached this replica's directory yet."""


def answer(
    ok: bool,
    *,
    balance: float | None = None,
    unit: str | None = None,
    error: str | None = None,
    provider: str | None = None,
    currency: str | None = None,
    postpaid: bool = False,
) -> dict[str, Any]:
    """The reply the config service reads (`currency` for money balances; `postpaid`: the
    balance is nominal, the account is invoiced)."""
    return {
        "ok": ok,
        "balance": balance,
        "unit": unit,
        "currency": currency,
        "postpaid": postpaid,
        "error": error,
        "provider": provider,
    }


class ProviderTestHandler:
    """Answers `stagger.rpc.sms_gateway.provider_test`."""

    def __init__(
        self,
        *,
        sites: Callable[[], SiteDirectory],
        account_for: Callable[[Site], str | None],
        providers: Callable[[], Providers],
        events: GatewayEvents,
        trust: Callable[[], Trust],
        credits: Credits,
    ) -> None:
        # Made after `register` (providers and trust need the key ring, the engine makes its
        # site directory in `start`): read at use.
        self._sites = sites
        self._account_for = account_for
        self._providers = providers
        self._events = events
        self._trust = trust
        self._credits = credits

    async def handle(self, body: Any) -> dict[str, Any]:
        """Check a site's provider credentials and report the balance."""
        if not isinstance(body, dict):
            return answer(False, error="the request must be a JSON object")
        site_id, group_id = str(body.get("site_id", "")), str(body.get("group_id", ""))
        actor = str(body.get("actor") or "unknown")
        if not site_id or not group_id:
            return answer(False, error="fields 'site_id' and 'group_id' are required")
        site = await self._sites().wait_for(site_id, patience=SITE_PATIENCE_SECONDS)
        if site is None or site.group_id != group_id:
            return answer(False, error=f"unknown site {site_id} in group {group_id}")
        away = failover_site(site)
        if away is None:
            return await self._test(site, actor)
        # The secondary's webhooks verify only once its credentials are proved as well; both
        # at once, so that the two fit the config service's wait.
        result, secondary = await asyncio.gather(self._test(site, actor), self._test(away, actor))
        return {**result, "secondary": secondary}

    async def _test(self, site: Site, actor: str) -> dict[str, Any]:
        """Test the account `site` sends through (its primary; a swapped site's secondary)."""
        kind = site.settings.sms.provider.kind
        account = self._account_for(site)
        if account is None:
            return answer(False, error="no SMS provider is selected", provider=kind)
        balance: Balance | None = None
        error: str | None = None
        try:
            provider = self._providers().for_site(site)
            balance = await asyncio.wait_for(provider.balance(), PROVIDER_TEST_SECONDS)
        except (NotConfigured, ProviderError) as exc:
            error = str(exc)
        except TimeoutError:
            error = f"the provider did not answer within {PROVIDER_TEST_SECONDS:g} s"
        tested = ProviderTested(
            account=account,
            provider=kind,
            group_id=site.group_id,
            site_id=site.site_id,
            ok=balance is not None,
            balance=balance.amount if balance else None,
            unit=balance.unit if balance else None,
            error=error,
        )
        await self._events.emit(
            subjects.provider_health(account),
            tested,
            group_id=site.group_id,
            site_id=site.site_id,
            about=account,
            actor=actor,
        )
        if balance is None:
            return answer(False, error=error, provider=kind)
        await self._trust().record_test(site)
        await self._credits.report(
            account,
            kind,
            balance.unit,
            balance.amount,
            "test",
            site.site_id,
            currency=balance.currency,
        )
        return answer(
            True,
            balance=balance.amount,
            unit=balance.unit,
            provider=kind,
            currency=balance.currency,
            postpaid=balance.postpaid,
        )
