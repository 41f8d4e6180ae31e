"""Every wizard setting can be set, read back, and is recorded as an event with old → new."""

from __future__ import annotations

from typing import Any

import pytest

from shared.bus.topology import SETTINGS
from shared.domain.site_settings import (
    GROUP_ONLY_PATHS,
    SECRET_PATHS,
    SYSTEM_PATHS,
    settable_paths,
)
from shared.events.schemas.settings import SiteSettingsChanged
from shared.eventstore import EventStore
from tests.integration.config.conftest import ConfigHarness

# A valid, different-from-default value for every setting a site can override.
NEW_VALUES: dict[str, Any] = {
    "profile.name": "Harbour Dental",
    "profile.timezone": "Australia/Sydney",
    "profile.region": "AU",
    "email.enabled": False,
    "email.address": "reception@harbour.example",
    "email.display_name": "Harbour Dental",
    "email.smtp.host": "smtp.harbour.example",
    "email.smtp.port": 465,
    "email.smtp.security": "tls",
    "email.smtp.username": "reception@harbour.example",
    "email.smtp.password": "smtp-pass-1",
    "email.imap.enabled": True,
    "email.imap.host": "imap.harbour.example",
    "email.imap.port": 143,
    "email.imap.security": "starttls",
    "email.imap.username": "reception@harbour.example",
    "email.imap.password": "imap-pass-1",
    "email.imap.mailbox": "Patients",
    "email.imap.sent_folder": "Sent Items",
    "email.mode": "manual",
    "email.sessions": [{"days": ["sat"], "start": "10:00", "end": "12:00"}],
    "email.check_every_minutes": 15,
    "email.preset_times": ["07:30", "12:00"],
    "email.per_minute": 8,
    "email.daily_cap": 500,
    "email.provider_preset": "microsoft_365",
    "email.open_attachments_directly": True,
    "email.sign_in.method": "microsoft_365",
    "email.sign_in.tenant_id": "harbour.onmicrosoft.com",
    "email.sign_in.client_id": "6f1c0d2e-1111-4a4a-9b9b-0123456789ab",
    "email.sign_in.client_secret": "entra-secret-1",
    "email.sign_in.certificate": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
    "email.sign_in.service_account_key": '{"client_email": "sa@p.iam.example"}',
    "email.sign_in.refresh_token": "1//refresh-token-1",
    "email.sign_in.token_url": "https://login.harbour.example/token",
    "email.sign_in.scope": "https://outlook.office365.com/.default",
    "email.sign_in.user": "reception@harbour.example",
    "email.sign_in.graph_url": "https://graph.microsoft.us/v1.0",
    "email.transport": "graph",
    "sms.provider.kind": "simulator",
    "sms.provider.account_id": "practice-42",
    "sms.provider.secret": "sms-secret-1",
    "sms.provider.webhook_secret": "sms-webhook-secret-1",
    "sms.provider.base_url": "http://127.0.0.1:8090",
    "sms.provider.webhook_sources": ["203.0.113.0/24"],
    "sms.provider.rate_per_second": 5,
    "sms.provider.credits_per_segment": 2,
    "sms.secondary_provider.kind": "simulator",
    "sms.secondary_provider.account_id": "practice-42-spare",
    "sms.secondary_provider.secret": "sms-secret-2",
    "sms.secondary_provider.webhook_secret": "sms-webhook-secret-2",
    "sms.secondary_provider.base_url": "http://127.0.0.1:8091",
    "sms.secondary_provider.webhook_sources": ["198.51.100.0/24"],
    "sms.secondary_provider.rate_per_second": 3,
    "sms.secondary_provider.credits_per_segment": 3,
    "sms.failover_after_seconds": 120,
    "sms.sender_id": "HarbourDent",
    "sms.mode": "immediate",
    "sms.sessions": [{"days": ["mon", "wed"], "start": "13:00", "end": "15:30"}],
    "sms.every_minutes": 7,
    "sms.warn_after_days": 2,
    "sms.low_credit_threshold": 250,
    "sms.auto_topup_amount": 500,
    "sms.quiet_hours.start": "09:00",
    "sms.quiet_hours.end": "20:00",
    "sms.optout_keywords": ["STOP", "STOPALL", "UNSUBSCRIBE", "END", "QUIT", "OPTOUT", "ARRET"],
    "sms.optin_keywords": ["START", "UNSTOP", "RESUME"],
    "sms.reply_keywords": {"confirm": ["YES", "YES1"], "cancel": ["NO"], "survey": ["1", "2"]},
    "sms.stop_confirmation": "{site}: you will get no more texts. Reply START to come back.",
    "sms.help_reply": "{site}: call 020 7946 0000 for help.",
    "blackouts": [{"days": ["sun"], "start": "01:00", "end": "03:00"}],
    "closures": [{"start": "2026-12-25", "end": "2026-12-26", "label": "Christmas"}],
}


def nested(path: str, value: Any) -> dict[str, Any]:
    node: dict[str, Any] = {}
    current = node
    *parents, leaf = path.split(".")
    for part in parents:
        current[part] = {}
        current = current[part]
    current[leaf] = value
    return node


def read(settings: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        settings = settings[part]
    return settings


def test_every_settable_path_has_a_test_value() -> None:
    # Group-only paths (consent categories) are refused on a site: test_consent.py sets them
    # on the group and checks the refusal.
    assert set(NEW_VALUES) == settable_paths() - SYSTEM_PATHS - GROUP_ONLY_PATHS


@pytest.mark.parametrize("path", sorted(NEW_VALUES))
async def test_setting_is_set_read_back_and_recorded(
    config: ConfigHarness, group: dict[str, str], path: str
) -> None:
    site_id = group["site_id"]
    async with config.client(group["admin"]) as client:
        before = await client.get(f"/api/v1/sites/{site_id}")
        old = read(before.json()["settings"], path)
        response = await client.patch(
            f"/api/v1/sites/{site_id}/settings",
            json={"set": nested(path, NEW_VALUES[path]), "note": f"set {path}"},
            headers={"If-Match": before.headers["ETag"]},
        )
        assert response.status_code == 200, response.text
        after = await client.get(f"/api/v1/sites/{site_id}")
    value = read(after.json()["settings"], path)
    if path in SECRET_PATHS:
        assert value == "********"
    elif isinstance(NEW_VALUES[path], list) and path.endswith("keywords"):
        assert value == NEW_VALUES[path]
    else:
        assert value == NEW_VALUES[path] or (
            isinstance(value, float) and value == float(NEW_VALUES[path])
        )
    assert path in after.json()["overridden"]
    assert after.headers["ETag"] == f'"{response.json()["version"]}"'

    last = await EventStore(config.nc, SETTINGS).last(f"settings.*.{site_id}")
    assert last is not None
    assert isinstance(last.data, SiteSettingsChanged)
    assert last.actor.startswith("token:")
    assert last.data.note == f"set {path}"
    change = next(c for c in last.data.changes if c.path == path)
    if path in SECRET_PATHS:
        assert (change.old, change.new) == (None, "(changed)")
    else:
        assert change.old == old
        assert change.new == value or change.new == NEW_VALUES[path]


async def test_unchanged_patch_writes_no_event(
    config: ConfigHarness, group: dict[str, str]
) -> None:
    site_id = group["site_id"]
    async with config.client(group["admin"]) as client:
        before = await client.get(f"/api/v1/sites/{site_id}")
        count = await config.stream_count(f"settings.*.{site_id}")
        response = await client.patch(
            f"/api/v1/sites/{site_id}/settings",
            json={"set": {"sms": {"every_minutes": 3}}},
            headers={"If-Match": before.headers["ETag"]},
        )
    assert response.status_code == 200
    assert response.json()["changed"] is False
    assert await config.stream_count(f"settings.*.{site_id}") == count


async def test_sessions_are_added_and_deleted_individually(
    config: ConfigHarness, group: dict[str, str]
) -> None:
    site_id = group["site_id"]
    async with config.client(group["admin"]) as client:
        site = await client.get(f"/api/v1/sites/{site_id}")
        added = await client.post(
            f"/api/v1/sites/{site_id}/sessions/sms",
            json={"days": ["sat"], "start": "09:00", "end": "12:00"},
            headers={"If-Match": site.headers["ETag"]},
        )
        assert added.status_code == 201, added.text
        window_id = added.headers["Location"].rsplit("/", 1)[1]
        site = await client.get(f"/api/v1/sites/{site_id}")
        assert len(site.json()["settings"]["sms"]["sessions"]) == 2
        deleted = await client.delete(
            f"/api/v1/sites/{site_id}/sessions/sms/{window_id}",
            headers={"If-Match": site.headers["ETag"]},
        )
        assert deleted.status_code == 200, deleted.text
        site = await client.get(f"/api/v1/sites/{site_id}")
        assert [s["days"] for s in site.json()["settings"]["sms"]["sessions"]] == [
            ["mon", "tue", "wed", "thu", "fri"]
        ]
        replaced = await client.put(
            f"/api/v1/sites/{site_id}/sessions/email",
            json=[
                {"days": ["mon"], "start": "08:00", "end": "10:00"},
                {"days": ["mon"], "start": "14:00", "end": "16:00"},
            ],
            headers={"If-Match": site.headers["ETag"]},
        )
        assert replaced.status_code == 200, replaced.text
        missing = await client.delete(
            f"/api/v1/sites/{site_id}/sessions/sms/w-doesnotexist",
            headers={"If-Match": replaced.headers["ETag"]},
        )
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "sms.sessions"
