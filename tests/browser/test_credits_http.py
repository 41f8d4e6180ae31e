"""The console's credit answers over plain HTTP: the wizard's forecast says how many messages
the latest reported balance pays for; the credits page shows the latest report and says "No
credit events yet" only for an account without any."""

from __future__ import annotations

from services.config.adapters.settings_store import SettingsStore
from shared.bus import subjects
from shared.bus.topology import PROVIDERS, SETTINGS
from shared.domain.accounts import sms_account_id
from shared.events.envelope import make_event
from shared.events.schemas.providers import CreditBalanceReported
from shared.eventstore import EventStore
from tests.browser.conftest import ConsoleStack
from tests.browser.test_console_http import signed_in


async def test_the_wizard_forecast_and_credits_page_use_the_latest_report(
    stack: ConsoleStack,
) -> None:
    group = await stack.group()
    site_id = group["sim_site"]
    site = await SettingsStore(EventStore(stack.nc, SETTINGS)).site(site_id)
    assert site is not None
    account = sms_account_id(site.settings.sms.provider, site.group_id)
    assert account is not None
    async with signed_in(stack, group["admin_user"]) as (client, _):
        before = await client.get("/console/credits")
        assert "No credit events yet." in before.text
        for balance in (900.0, 120.0, 60.0):
            data = CreditBalanceReported(
                account=account,
                provider="simulator",
                balance=balance,
                unit="credits",
                source="send",
            )
            event = make_event(
                data, source="sms_gateway", actor="service:sms_gateway", subject=account
            )
            await EventStore(stack.nc, PROVIDERS).append(subjects.credits(account), event)
        wizard = await client.get(f"/console/sites/{site_id}/wizard/sms")
        credits = await client.get("/console/credits")
    assert wizard.status_code == 200
    assert 'id="forecast-credits" class="warning"' in wizard.text
    assert "60 of 100 can be sent with the credits left (balance 60 credits)" in wizard.text
    assert '<strong class="balance-value">60 credits</strong>' in credits.text
    assert "No credit events yet." not in credits.text
    assert "3 reports from" in credits.text
