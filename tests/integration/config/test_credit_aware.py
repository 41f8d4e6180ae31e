"""Forecast and submission are credit-aware: they say how many of the messages the SMS
account's latest reported balance pays for, and a submission that needs more is still accepted
(with a warning), never refused."""

from __future__ import annotations

from services.config.domain.aggregates import SiteState
from shared.bus import subjects
from shared.bus.topology import PROVIDERS
from shared.domain.accounts import sms_account_id
from shared.events.envelope import make_event
from shared.events.schemas.providers import CreditBalanceReported
from shared.eventstore import EventStore
from tests.integration.config.conftest import ConfigHarness
from tests.integration.config.test_submission import sms_site


async def _report(config: ConfigHarness, site: SiteState, balance: float) -> None:
    account = sms_account_id(site.settings.sms.provider, site.group_id)
    assert account is not None
    data = CreditBalanceReported(
        account=account, provider="simulator", balance=balance, unit="credits", source="poll"
    )
    event = make_event(data, source="sms_gateway", actor="service:sms_gateway", subject=account)
    await EventStore(config.nc, PROVIDERS).append(subjects.credits(account), event)


async def _site(config: ConfigHarness) -> tuple[str, SiteState]:
    from services.config.adapters.settings_store import SettingsStore
    from shared.bus.topology import SETTINGS

    group_id = await config.create_group("Credits")
    admin = await config.token(group_id, "group_admin")
    site_id = (await config.create_site(admin, group_id, settings=sms_site(group_id)))["site_id"]
    site = await SettingsStore(EventStore(config.nc, SETTINGS)).site(site_id)
    assert site is not None
    return admin, site


async def test_the_forecast_says_how_many_the_credits_left_pay_for(config: ConfigHarness) -> None:
    admin, site = await _site(config)
    url = f"/api/v1/sites/{site.site_id}/forecast"
    async with config.client(admin) as client:
        before = (await client.get(url, params={"messages": 1000, "queued": 0})).json()
        assert before["credits"]["balance"] is None
        assert "no balance reported yet" in before["credits"]["note"]
        for balance in (1000.0, 400.0, 750.0):  # the latest report counts, not the largest
            await _report(config, site, balance)
        got = (await client.get(url, params={"messages": 1000, "queued": 0})).json()
        behind = (await client.get(url, params={"messages": 1000, "queued": 700})).json()
    assert got["credits"]["summary"] == "750 of 1,000 can be sent with the credits left"
    assert got["credits"]["warning"].startswith("750 of 1,000 can be sent")
    assert behind["credits"]["fit"] == 50


async def test_a_submission_beyond_the_credits_is_accepted_with_a_warning(
    config: ConfigHarness,
) -> None:
    admin, site = await _site(config)
    await _report(config, site, 3.0)
    messages = [{"to": f"07700 900{i:03d}", "body": f"Recall {i}"} for i in range(4)]
    async with config.client(admin) as client:
        short = await client.post(
            f"/api/v1/sites/{site.site_id}/messages", json={"channel": "sms", "messages": messages}
        )
        await _report(config, site, 10.0)
        enough = await client.post(
            f"/api/v1/sites/{site.site_id}/messages", json={"channel": "sms", "messages": messages}
        )
    assert short.status_code == 202, short.text
    assert short.json()["accepted"] == 4
    credits = short.json()["credits"]
    assert (credits["balance"], credits["fit"], credits["needed"]) == (3.0, 3, 4.0)
    assert credits["warning"].startswith("3 of 4 can be sent with the credits left")
    assert enough.status_code == 202
    assert enough.json()["credits"]["warning"] is None
