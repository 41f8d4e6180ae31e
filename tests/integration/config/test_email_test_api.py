"""`POST /api/v1/sites/{site}/email-test` (issue 19) through the config service alone: with no
email gateway running it answers 503 naming that; a caller who does not manage the site gets
no answer about it."""

from __future__ import annotations

from tests.integration.config.conftest import ConfigHarness


async def test_email_test_without_a_gateway_is_503(
    config: ConfigHarness, group: dict[str, str]
) -> None:
    async with config.client(group["admin"]) as client:
        response = await client.post(f"/api/v1/sites/{group['site_id']}/email-test")
    assert response.status_code == 503, response.text
    assert response.json()["title"] == "Email gateway unavailable"


async def test_email_test_of_another_groups_site_is_refused(
    config: ConfigHarness, group: dict[str, str]
) -> None:
    other = await config.create_group()
    stranger = await config.token(other, "group_admin")
    async with config.client(stranger) as client:
        response = await client.post(f"/api/v1/sites/{group['site_id']}/email-test")
    assert response.status_code in (403, 404), response.text
