"""The admin API: accounts, the submission log, reset, health."""

from __future__ import annotations

import secrets
from datetime import datetime

import httpx

from tests.integration.sms_provider_sim.harness import (
    Account,
    WebhookReceiver,
    balance,
    message,
    stored,
    submissions,
)


async def test_health(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200


async def test_account_updates_are_partial(client: httpx.AsyncClient, account: Account) -> None:
    before = (await client.get(f"/v1/admin/accounts/{account.name}")).json()

    updated = await client.put(
        f"/v1/admin/accounts/{account.name}",
        json={"credits": 7, "auto_topup": {"enabled": True, "threshold": 5}},
    )

    assert updated.status_code == 200
    after = updated.json()
    assert after["credits"] == 7
    assert after["auto_topup"] == {"enabled": True, "threshold": 5, "amount": 1000}
    for unchanged in ("api_key", "webhook_url", "webhook_secret", "credits_per_segment"):
        assert after[unchanged] == before[unchanged], unchanged
    assert (await client.get("/v1/balance", headers=account.auth)).json() == {
        "balance": 7,
        "unit": "credits",
        "auto_topup": {"enabled": True, "threshold": 5, "amount": 1000},
    }
    cleared = await client.put(f"/v1/admin/accounts/{account.name}", json={"webhook_url": None})
    assert cleared.json()["webhook_url"] is None


async def test_new_account_without_key_gets_one_and_the_old_key_stops_working(
    client: httpx.AsyncClient,
) -> None:
    name = f"acct-{secrets.token_hex(4)}"
    created = await client.put(f"/v1/admin/accounts/{name}", json={"credits": 3})
    assert created.status_code == 201
    key = created.json()["api_key"]
    assert created.json()["credits"] == 3
    assert (await client.get("/v1/balance", headers={"Authorization": f"Bearer {key}"})).json()[
        "balance"
    ] == 3

    new_key = f"key-{secrets.token_hex(8)}"
    await client.put(f"/v1/admin/accounts/{name}", json={"api_key": new_key})
    old = await client.get("/v1/balance", headers={"Authorization": f"Bearer {key}"})
    new = await client.get("/v1/balance", headers={"Authorization": f"Bearer {new_key}"})
    assert (old.status_code, new.status_code) == (401, 200)


async def test_account_settings_are_validated(client: httpx.AsyncClient, account: Account) -> None:
    cases = [
        ({"credits": -1}, 400, "credits"),
        ({"rate_per_second": 0}, 400, "rate_per_second"),
        ({"webhook_url": "not a url"}, 400, "webhook_url"),
        ({"undeliverable_prefixes": ["4470000"]}, 400, "undeliverable_prefixes.0"),
        ({"credit": 5}, 400, "credit"),
        ({"auto_topup": {"enabled": "sometimes"}}, 400, "auto_topup.enabled"),
        ({"api_key": "sim-dev-key"}, 409, "api_key"),  # the default account's key
    ]
    for body, status, field in cases:
        response = await client.put(f"/v1/admin/accounts/{account.name}", json=body)
        assert response.status_code == status, body
        assert response.json()["field"] == field, body
    assert (await client.put("/v1/admin/accounts/bad name!", json={})).status_code == 400
    assert (await client.get("/v1/admin/accounts/no-such-account")).status_code == 404
    assert await balance(client, account) == 100


async def test_submissions_are_listed_in_arrival_order_with_microseconds(
    client: httpx.AsyncClient, account: Account
) -> None:
    for reference in ("one", "two", "three"):
        await client.post("/v1/messages", json=message(reference), headers=account.auth)
    await client.post("/v1/messages", json=message("two"), headers=account.auth)

    log = await submissions(client, account)

    assert [(s["reference"], s["outcome"]) for s in log] == [
        ("one", "accepted"),
        ("two", "accepted"),
        ("three", "accepted"),
        ("two", "duplicate"),
    ]
    times = [datetime.fromisoformat(s["received_at"]) for s in log]
    assert times == sorted(times)
    assert all("." in s["received_at"] and len(s["received_at"].split(".")[1]) >= 6 for s in log)
    messages = await stored(client, account)
    assert [m["reference"] for m in messages] == ["one", "two", "three"]
    assert all(m["accepted_at"] for m in messages)


async def test_reset_forgets_activity_but_keeps_accounts_and_balances(
    client: httpx.AsyncClient, account: Account, receiver: WebhookReceiver
) -> None:
    await client.post("/v1/messages", json=message("before-reset"), headers=account.auth)
    await client.put("/v1/admin/faults", json={"rate_5xx": 1.0})

    response = await client.post("/v1/admin/reset")

    assert response.status_code == 200
    assert (await client.get("/v1/admin/faults")).json()["rate_5xx"] == 0.0
    assert (await client.get("/v1/admin/submissions")).json() == []
    assert (await client.get("/v1/admin/messages")).json() == []
    assert await balance(client, account) == 99
    # The reference is free again, and sending works (no 5xx fault left).
    again = await client.post("/v1/messages", json=message("before-reset"), headers=account.auth)
    assert again.status_code == 201
