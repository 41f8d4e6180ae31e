"""The forecast over the API, from a site's own settings."""

from __future__ import annotations

from tests.integration.config.conftest import ConfigHarness


async def test_seed_example_100_sms_one_every_3_minutes_needs_300_minutes(
    config: ConfigHarness, group: dict[str, str]
) -> None:
    async with config.client(group["admin"]) as client:
        response = await client.get(
            f"/api/v1/sites/{group['site_id']}/forecast",
            params={"channel": "sms", "messages": 100, "days": 7, "queued": 0},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["session_minutes_needed"] == 300
    assert body["fit_within_horizon"] == 100
    assert body["summary"] == "100 of 100 messages can be sent in the next 7 days"


async def test_forecast_warns_when_sending_takes_longer_than_the_site_allows(
    config: ConfigHarness, group: dict[str, str]
) -> None:
    async with config.client(group["admin"]) as client:
        site = await client.get(f"/api/v1/sites/{group['site_id']}")
        await client.patch(
            f"/api/v1/sites/{group['site_id']}/settings",
            json={"set": {"sms": {"warn_after_days": 1}}},
            headers={"If-Match": site.headers["ETag"]},
        )
        response = await client.get(
            f"/api/v1/sites/{group['site_id']}/forecast",
            params={"channel": "sms", "messages": 2000, "days": 3, "queued": 0},
        )
    body = response.json()
    assert body["too_long"] is True
    assert body["warning"]
    assert body["fit_within_horizon"] < 2000
    assert body["capacity_per_week"] == 5 * 8 * 20, "Mon–Fri 09:00–17:00, one per 3 minutes"


async def test_forecast_parameters_are_validated(config: ConfigHarness, group: dict) -> None:
    async with config.client(group["admin"]) as client:
        response = await client.get(
            f"/api/v1/sites/{group['site_id']}/forecast", params={"messages": -1, "days": 0}
        )
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"messages", "days"}
