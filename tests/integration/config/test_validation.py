"""Bad input: 422 naming the field, nothing appended, the service keeps running."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.config.conftest import ConfigHarness

S = {"days": ["mon"], "start": "09:00", "end": "12:00"}

# (request body "set", the field the error must name)
INVALID: list[tuple[dict[str, Any], str]] = [
    ({"profile": {"timezone": "Mars/Olympus"}}, "profile.timezone"),
    ({"profile": {"region": "FR"}}, "profile.region"),
    ({"profile": {"name": "x" * 121}}, "profile.name"),
    ({"email": {"address": "not-an-address"}}, "email.address"),
    ({"email": {"smtp": {"host": "bad host!"}}}, "email.smtp.host"),
    ({"email": {"smtp": {"port": 0}}}, "email.smtp.port"),
    ({"email": {"smtp": {"port": 70000}}}, "email.smtp.port"),
    ({"email": {"smtp": {"security": "ssl3"}}}, "email.smtp.security"),
    ({"email": {"smtp": {"password": ""}}}, "email.smtp.password"),
    ({"email": {"imap": {"port": -1}}}, "email.imap.port"),
    ({"email": {"imap": {"mailbox": ""}}}, "email.imap.mailbox"),
    ({"email": {"mode": "sometimes"}}, "email.mode"),
    ({"email": {"check_every_minutes": 0}}, "email.check_every_minutes"),
    ({"email": {"check_every_minutes": 1441}}, "email.check_every_minutes"),
    ({"email": {"preset_times": ["25:00"]}}, "email.preset_times"),
    ({"email": {"preset_times": ["09:00", "09:00"]}}, "email.preset_times"),
    ({"email": {"per_minute": -1}}, "email.per_minute"),
    ({"email": {"daily_cap": 0}}, "email.daily_cap"),
    ({"email": {"provider_preset": "aol"}}, "email.provider_preset"),
    (
        {"email": {"sessions": [S, {"days": ["mon"], "start": "11:00", "end": "13:00"}]}},
        "email.sessions",
    ),
    ({"email": {"sessions": [{"days": [], "start": "09:00", "end": "10:00"}]}}, "email.sessions"),
    (
        {"email": {"sessions": [{"days": ["funday"], "start": "09:00", "end": "10:00"}]}},
        "email.sessions",
    ),
    (
        {"email": {"sessions": [{"days": ["mon"], "start": "9am", "end": "10:00"}]}},
        "email.sessions",
    ),
    ({"email": {"nonsense": True}}, "email.nonsense"),
    ({"sms": {"provider": {"kind": "carrier-pigeon"}}}, "sms.provider.kind"),
    ({"sms": {"provider": {"base_url": "ftp://x"}}}, "sms.provider.base_url"),
    ({"sms": {"provider": {"rate_per_second": 0}}}, "sms.provider.rate_per_second"),
    ({"sms": {"provider": {"locked": True}}}, "sms.provider.locked"),
    ({"sms": {"sender_id": "ThisIsTooLongAnId"}}, "sms.sender_id"),
    ({"sms": {"sender_id": "Bad*Chars"}}, "sms.sender_id"),
    ({"sms": {"mode": "eventually"}}, "sms.mode"),
    ({"sms": {"every_minutes": 0}}, "sms.every_minutes"),
    ({"sms": {"warn_after_days": 0}}, "sms.warn_after_days"),
    ({"sms": {"low_credit_threshold": -5}}, "sms.low_credit_threshold"),
    ({"sms": {"auto_topup_amount": -1}}, "sms.auto_topup_amount"),
    ({"sms": {"quiet_hours": {"start": "21:00", "end": "08:00"}}}, "sms.quiet_hours"),
    ({"sms": {"optout_keywords": ["STOP NOW"]}}, "sms.optout_keywords"),
    ({"sms": {"reply_keywords": {"confirm": ["YES!"]}}}, "sms.reply_keywords"),
    ({"sms": {"reply_keywords": {"confirm": ["A" * 25]}}}, "sms.reply_keywords"),
    ({"sms": {"reply_keywords": {"confirm": ["YES"], "cancel": ["yes"]}}}, "sms.reply_keywords"),
    ({"sms": {"optin_keywords": ["STOP"]}}, "sms.optin_keywords"),
    ({"blackouts": [S, S]}, "blackouts"),
    ({"closures": [{"start": "2026-12-26", "end": "2026-12-25"}]}, "closures"),
]


@pytest.mark.parametrize(("patch", "field"), INVALID, ids=[f for _, f in INVALID])
async def test_invalid_setting_is_refused_naming_the_field(
    config: ConfigHarness, group: dict[str, str], patch: dict[str, Any], field: str
) -> None:
    site_id = group["site_id"]
    before = await config.stream_count()
    async with config.client(group["admin"]) as client:
        site = await client.get(f"/api/v1/sites/{site_id}")
        response = await client.patch(
            f"/api/v1/sites/{site_id}/settings",
            json={"set": patch},
            headers={"If-Match": site.headers["ETag"]},
        )
        still = await client.get(f"/api/v1/sites/{site_id}")
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    fields = [e["field"] for e in response.json()["errors"]]
    assert any(
        f == field or f.startswith(field + ".") or f.startswith(field + "[") for f in fields
    ), fields
    assert await config.stream_count() == before, "nothing may be appended"
    assert still.headers["ETag"] == site.headers["ETag"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"site_id": "Has Spaces", "name": "x"}, "site_id"),
        ({"site_id": "ok-site", "name": ""}, "name"),
        ({"site_id": "ok-site-2", "name": "x", "timezone": "Nowhere/Land"}, "profile.timezone"),
        ({"name": "no id"}, "site_id"),
    ],
)
async def test_invalid_site_creation(
    config: ConfigHarness, group: dict[str, str], body: dict, field: str
) -> None:
    before = await config.stream_count()
    async with config.client(group["admin"]) as client:
        response = await client.post(f"/api/v1/groups/{group['group_id']}/sites", json=body)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert await config.stream_count() == before


async def test_inheriting_an_unknown_path_is_refused(config: ConfigHarness, group: dict) -> None:
    async with config.client(group["admin"]) as client:
        site = await client.get(f"/api/v1/sites/{group['site_id']}")
        response = await client.patch(
            f"/api/v1/sites/{group['site_id']}/settings",
            json={"inherit": ["sms.colour"]},
            headers={"If-Match": site.headers["ETag"]},
        )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "sms.colour"


async def test_malformed_json_and_wrong_types(config: ConfigHarness, group: dict) -> None:
    async with config.client(group["admin"]) as client:
        site = await client.get(f"/api/v1/sites/{group['site_id']}")
        broken = await client.patch(
            f"/api/v1/sites/{group['site_id']}/settings",
            content=b"{not json",
            headers={"If-Match": site.headers["ETag"], "content-type": "application/json"},
        )
        wrong = await client.patch(
            f"/api/v1/sites/{group['site_id']}/settings",
            json={"set": "everything"},
            headers={"If-Match": site.headers["ETag"]},
        )
        bad_version = await client.patch(
            f"/api/v1/sites/{group['site_id']}/settings",
            json={"set": {}},
            headers={"If-Match": "yesterday"},
        )
        alive = await client.get(f"/api/v1/sites/{group['site_id']}")
    assert broken.status_code == 422
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "set"
    assert bad_version.status_code == 422
    assert alive.status_code == 200
