"""Injected faults: 5xx, 429, latency, answer delay, timeout after accept, exhausted credits,
determinism."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from tests.integration.sms_provider_sim.conftest import MakeAccount
from tests.integration.sms_provider_sim.harness import (
    Account,
    balance,
    message,
    stored,
    submissions,
)
from tests.support.waiting import wait_until


async def test_injected_5xx_stores_and_debits_nothing(
    client: httpx.AsyncClient, account: Account
) -> None:
    await client.put("/v1/admin/faults", json={"rate_5xx": 1.0})

    response = await client.post("/v1/messages", json=message("five"), headers=account.auth)

    assert response.status_code == 503
    assert response.json() == {"error": "service_unavailable"}
    assert await stored(client, account) == []
    assert await balance(client, account) == 100
    assert [(s["outcome"], s["status_code"]) for s in await submissions(client, account)] == [
        ("rejected_5xx", 503)
    ]


async def test_injected_429_carries_the_configured_retry_after(
    client: httpx.AsyncClient, account: Account
) -> None:
    await client.put("/v1/admin/faults", json={"rate_429": 1.0, "retry_after_seconds": 7})

    response = await client.post("/v1/messages", json=message(), headers=account.auth)

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json() == {"error": "rate_limited"}
    assert await stored(client, account) == []


async def test_faults_apply_to_sending_only(client: httpx.AsyncClient, account: Account) -> None:
    await client.put("/v1/admin/faults", json={"rate_5xx": 1.0, "rate_429": 1.0})

    assert (await client.get("/v1/balance", headers=account.auth)).status_code == 200
    topup = await client.post("/v1/topup", json={"amount": 1}, headers=account.auth)
    assert topup.status_code == 200


async def test_seeded_faults_repeat_exactly(
    make_account: MakeAccount, client: httpx.AsyncClient
) -> None:
    account = await make_account(credits=1000, rate_per_second=10_000)

    async def run() -> list[int]:
        await client.put("/v1/admin/faults", json={"seed": 99, "rate_5xx": 0.5})
        codes = []
        for _ in range(30):
            response = await client.post("/v1/messages", json=message(), headers=account.auth)
            codes.append(response.status_code)
        return codes

    first, second = await run(), await run()

    assert first == second
    assert set(first) == {201, 503}


async def test_latency_delays_the_answer(client: httpx.AsyncClient, account: Account) -> None:
    await client.put("/v1/admin/faults", json={"latency_ms": [300, 300]})

    started = time.monotonic()
    response = await client.post("/v1/messages", json=message(), headers=account.auth)

    assert response.status_code == 201
    assert time.monotonic() - started >= 0.3


async def test_answer_delay_debits_first_so_a_later_answer_carries_an_older_balance(
    client: httpx.AsyncClient, account: Account
) -> None:
    await client.put("/v1/admin/faults", json={"answer_delay_ms": [3000, 3000]})
    held = asyncio.create_task(
        client.post("/v1/messages", json=message("held"), headers=account.auth)
    )
    # Debited while its answer is still held back.
    await wait_until(lambda: _balance_is(client, account, 99), message="the first debit")
    assert not held.done()
    await client.put("/v1/admin/faults", json={})
    quick = await client.post("/v1/messages", json=message("quick"), headers=account.auth)
    late = await held

    assert quick.json()["balance"] == 98
    assert late.status_code == 201 and late.json()["balance"] == 99
    assert [s["reference"] for s in await submissions(client, account)] == ["held", "quick"]


async def _balance_is(client: httpx.AsyncClient, account: Account, value: float) -> bool:
    return await balance(client, account) == value


async def test_timeout_after_accept_stores_the_message_but_sends_no_response(
    client: httpx.AsyncClient, account: Account
) -> None:
    await client.put(
        "/v1/admin/faults", json={"rate_timeout_after_accept": 1.0, "timeout_hold_seconds": 0.5}
    )
    body = message("ambiguous")

    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError, match="without sending"):
        await client.post("/v1/messages", json=body, headers=account.auth)
    assert time.monotonic() - started >= 0.5, "the request is held before the drop"

    # The gateway's reconciliation path: the message exists and was paid for.
    found = await client.get(
        "/v1/messages", params={"reference": "ambiguous"}, headers=account.auth
    )
    assert found.status_code == 200
    assert found.json()["reference"] == "ambiguous"
    assert await balance(client, account) == 99
    [submission] = await submissions(client, account)
    assert submission["outcome"] == "accepted_then_timeout"
    assert submission["status_code"] is None
    assert submission["message_id"] == found.json()["id"]

    # A client that retries anyway is told it is a duplicate, and nothing is debited again.
    await client.delete("/v1/admin/faults")
    retry = await client.post("/v1/messages", json=body, headers=account.auth)
    assert retry.status_code == 200
    assert retry.json()["duplicate"] is True
    assert retry.json()["id"] == found.json()["id"]
    assert await balance(client, account) == 99


async def test_timed_out_client_can_find_the_message_while_the_request_is_held(
    sim_client_factory: Callable[..., httpx.AsyncClient],
    client: httpx.AsyncClient,
    account: Account,
) -> None:
    await client.put(
        "/v1/admin/faults", json={"rate_timeout_after_accept": 1.0, "timeout_hold_seconds": 30}
    )
    async with sim_client_factory(timeout=0.5) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            await impatient.post("/v1/messages", json=message("held"), headers=account.auth)

    found = await client.get("/v1/messages", params={"reference": "held"}, headers=account.auth)
    assert found.status_code == 200
    assert found.json()["status"] in ("accepted", "delivered")


async def test_exhausted_credits_refuse_every_new_message(
    client: httpx.AsyncClient, account: Account
) -> None:
    await client.put("/v1/admin/faults", json={"exhaust_credits": True})

    refused = await client.post("/v1/messages", json=message(), headers=account.auth)

    assert refused.status_code == 402
    assert refused.json() == {"error": "insufficient_credits", "balance": 0, "required": 1}
    await client.delete("/v1/admin/faults")
    accepted = await client.post("/v1/messages", json=message(), headers=account.auth)
    assert accepted.status_code == 201


@pytest.mark.parametrize(
    ("faults", "field"),
    [
        ({"rate_5xx": 1.5}, "rate_5xx"),
        ({"rate_429": -0.1}, "rate_429"),
        ({"latency_ms": [50]}, "latency_ms"),
        ({"latency_ms": [500, 100]}, "latency_ms"),
        ({"rate_timeouts": 0.5}, "rate_timeouts"),
    ],
)
async def test_fault_settings_are_validated(
    client: httpx.AsyncClient, faults: dict[str, object], field: str
) -> None:
    response = await client.put("/v1/admin/faults", json=faults)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    # Nested problems are dotted paths ("latency_ms.1"): the top-level field comes first.
    assert response.json()["field"].split(".")[0] == field
    assert (await client.get("/v1/admin/faults")).json()["rate_5xx"] == 0.0
