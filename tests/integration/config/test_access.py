"""Tokens, roles and tenant isolation."""

from __future__ import annotations

import pytest

from shared.tokens import revoke_token
from tests.integration.config.conftest import ConfigHarness


@pytest.fixture
async def two_groups(config: ConfigHarness) -> dict[str, str]:
    a = await config.create_group("Group A")
    b = await config.create_group("Group B")
    admin_a = await config.token(a, "group_admin")
    admin_b = await config.token(b, "group_admin")
    a1 = (await config.create_site(admin_a, a, name="A one"))["site_id"]
    a2 = (await config.create_site(admin_a, a, name="A two"))["site_id"]
    b1 = (await config.create_site(admin_b, b, name="B one"))["site_id"]
    return {
        "a": a,
        "b": b,
        "a1": a1,
        "a2": a2,
        "b1": b1,
        "admin_a": admin_a,
        "manager_a1": await config.token(a, "site_manager", [a1]),
        "auditor_a": await config.token(a, "auditor"),
        "sender_a1": await config.token(a, "sender", [a1]),
    }


async def test_no_token_or_bad_token_is_401(config: ConfigHarness, two_groups: dict) -> None:
    async with config.client() as anonymous:
        response = await anonymous.get(f"/api/v1/sites/{two_groups['a1']}")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    for bad in ("nonsense", "stg_abc.def", two_groups["admin_a"] + "x"):
        async with config.client(bad) as client:
            assert (await client.get(f"/api/v1/sites/{two_groups['a1']}")).status_code == 401


async def test_site_manager_sees_and_changes_only_their_site(
    config: ConfigHarness, two_groups: dict
) -> None:
    async with config.client(two_groups["manager_a1"]) as client:
        own = await client.get(f"/api/v1/sites/{two_groups['a1']}")
        assert own.status_code == 200
        changed = await client.patch(
            f"/api/v1/sites/{two_groups['a1']}/settings",
            json={"set": {"sms": {"every_minutes": 5}}},
            headers={"If-Match": own.headers["ETag"]},
        )
        assert changed.status_code == 200
        for other in (two_groups["a2"], two_groups["b1"]):
            read = await client.get(f"/api/v1/sites/{other}")
            assert read.status_code == 404, "another site's existence must not leak"
            write = await client.patch(
                f"/api/v1/sites/{other}/settings",
                json={"set": {"sms": {"every_minutes": 9}}},
                headers={"If-Match": '"1"'},
            )
            assert write.status_code == 404
        listing = await client.get(f"/api/v1/groups/{two_groups['a']}/sites")
        assert [s["site_id"] for s in listing.json()] == [two_groups["a1"]]
        assert (await client.get(f"/api/v1/groups/{two_groups['b']}/sites")).status_code == 404
        defaults = await client.patch(
            f"/api/v1/groups/{two_groups['a']}/defaults",
            json={"set": {"sms": {"every_minutes": 9}}},
            headers={"If-Match": '"1"'},
        )
        assert defaults.status_code == 403


async def test_group_admin_cannot_reach_another_group(
    config: ConfigHarness, two_groups: dict
) -> None:
    async with config.client(two_groups["admin_a"]) as client:
        assert (await client.get(f"/api/v1/sites/{two_groups['b1']}")).status_code == 404
        assert (await client.get(f"/api/v1/groups/{two_groups['b']}")).status_code == 404
        create = await client.post(
            f"/api/v1/groups/{two_groups['b']}/sites", json={"site_id": "intruder", "name": "x"}
        )
        assert create.status_code == 404
        submit = await client.post(
            f"/api/v1/sites/{two_groups['b1']}/messages",
            json={"channel": "sms", "messages": [{"to": "+447700900001", "body": "hi"}]},
        )
        assert submit.status_code == 404


async def test_auditor_reads_but_cannot_write(config: ConfigHarness, two_groups: dict) -> None:
    async with config.client(two_groups["auditor_a"]) as client:
        site = await client.get(f"/api/v1/sites/{two_groups['a2']}")
        assert site.status_code == 200
        write = await client.patch(
            f"/api/v1/sites/{two_groups['a2']}/settings",
            json={"set": {"sms": {"every_minutes": 9}}},
            headers={"If-Match": site.headers["ETag"]},
        )
        assert write.status_code == 403
        send = await client.post(
            f"/api/v1/sites/{two_groups['a2']}/send-now", json={"channel": "sms"}
        )
        assert send.status_code == 403


async def test_sender_may_submit_but_not_read_settings(
    config: ConfigHarness, two_groups: dict
) -> None:
    async with config.client(two_groups["sender_a1"]) as client:
        assert (await client.get(f"/api/v1/sites/{two_groups['a1']}")).status_code == 404
        assert (await client.get(f"/api/v1/sites/{two_groups['a2']}")).status_code == 404


async def test_revoked_token_is_refused_at_once(config: ConfigHarness, two_groups: dict) -> None:
    token = await config.token(two_groups["a"], "auditor")
    async with config.client(token) as client:
        assert (await client.get(f"/api/v1/sites/{two_groups['a1']}")).status_code == 200
        token_id = token.removeprefix("stg_").split(".")[0]
        await revoke_token(config.nc, token_id, reason="left the practice")

        async def refused() -> bool:
            return (await client.get(f"/api/v1/sites/{two_groups['a1']}")).status_code == 401

        from tests.support.waiting import wait_until

        await wait_until(refused, timeout=5, message="revocation to take effect")
