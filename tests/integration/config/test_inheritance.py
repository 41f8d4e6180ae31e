"""Group defaults with per-site overrides: inherit until overridden, and back again."""

from __future__ import annotations

from shared.bus.topology import SETTINGS
from shared.events.schemas.settings import SiteSettingsChanged
from shared.eventstore import EventStore
from tests.integration.config.conftest import ConfigHarness
from tests.support.waiting import wait_until


async def test_sites_follow_group_defaults_until_they_override(config: ConfigHarness) -> None:
    group_id = await config.create_group("Inheritors")
    admin = await config.token(group_id, "group_admin")
    follower = (await config.create_site(admin, group_id, name="Follower"))["site_id"]
    rebel = (
        await config.create_site(
            admin, group_id, name="Rebel", settings={"sms": {"every_minutes": 10}}
        )
    )["site_id"]

    async with config.client(admin) as client:
        # The listing (read model) must know both sites before the fan-out can reach them.
        await wait_until(
            lambda: _count_sites(client, group_id, 2), timeout=10, message="read model"
        )
        group = await client.get(f"/api/v1/groups/{group_id}")
        changed = await client.patch(
            f"/api/v1/groups/{group_id}/defaults",
            json={"set": {"sms": {"every_minutes": 4}, "email": {"per_minute": 8}}},
            headers={"If-Match": group.headers["ETag"]},
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["sites_updated"] == sorted([follower, rebel]) or set(
            changed.json()["sites_updated"]
        ) == {follower, rebel}
        f = (await client.get(f"/api/v1/sites/{follower}")).json()
        r = (await client.get(f"/api/v1/sites/{rebel}")).json()
    assert f["settings"]["sms"]["every_minutes"] == 4
    assert "sms.every_minutes" in f["inherited"]
    assert r["settings"]["sms"]["every_minutes"] == 10, "an override wins over the default"
    assert r["settings"]["email"]["per_minute"] == 8, "other fields still inherit"

    last = await EventStore(config.nc, SETTINGS).last(f"settings.{group_id}.{follower}")
    assert isinstance(last.data, SiteSettingsChanged)
    assert last.data.cause == "group_default"
    assert {c.path for c in last.data.changes} == {"sms.every_minutes", "email.per_minute"}
    assert all(c.inherited for c in last.data.changes)


async def test_site_goes_back_to_inheriting(config: ConfigHarness) -> None:
    group_id = await config.create_group("Returners")
    admin = await config.token(group_id, "group_admin")
    site_id = (await config.create_site(admin, group_id, settings={"sms": {"every_minutes": 11}}))[
        "site_id"
    ]
    async with config.client(admin) as client:
        site = await client.get(f"/api/v1/sites/{site_id}")
        assert site.json()["settings"]["sms"]["every_minutes"] == 11
        back = await client.patch(
            f"/api/v1/sites/{site_id}/settings",
            json={"inherit": ["sms.every_minutes"]},
            headers={"If-Match": site.headers["ETag"]},
        )
        assert back.status_code == 200, back.text
        assert back.json()["changes"] == [
            {"path": "sms.every_minutes", "old": 11.0, "new": 3.0, "inherited": True}
        ]
        after = (await client.get(f"/api/v1/sites/{site_id}")).json()
    assert "sms.every_minutes" in after["inherited"]
    assert after["settings"]["sms"]["every_minutes"] == 3


async def test_group_default_that_breaks_a_site_is_refused(config: ConfigHarness) -> None:
    group_id = await config.create_group("Careful")
    admin = await config.token(group_id, "group_admin")
    site_id = (
        await config.create_site(
            admin,
            group_id,
            settings={"sms": {"reply_keywords": {"confirm": ["OK1"], "book": ["START2"]}}},
        )
    )["site_id"]
    before = await config.stream_count()
    async with config.client(admin) as client:
        await wait_until(lambda: _count_sites(client, group_id, 1), timeout=10, message="listing")
        group = await client.get(f"/api/v1/groups/{group_id}")
        response = await client.patch(
            f"/api/v1/groups/{group_id}/defaults",
            json={"set": {"sms": {"optin_keywords": ["START", "OK1"]}}},
            headers={"If-Match": group.headers["ETag"]},
        )
    assert response.status_code == 422
    assert any(site_id in e["field"] for e in response.json()["errors"])
    assert await config.stream_count() == before


async def _count_sites(client, group_id: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    response = await client.get(f"/api/v1/groups/{group_id}/sites")
    return len(response.json()) == n
