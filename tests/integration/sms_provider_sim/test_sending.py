"""Sending: segments and debits, idempotency (also under concurrency), credits, auth, validation,
rate limits."""

from __future__ import annotations

import asyncio
import math
import time

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


async def test_gsm7_message_is_debited_per_segment(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account(credits=100, credits_per_segment=2)
    body = "a" * 161  # one septet past a single GSM-7 segment

    response = await client.post(
        "/v1/messages", json=message("gsm", body=body), headers=account.auth
    )

    assert response.status_code == 201, response.text
    sent = response.json()
    assert sent["id"].startswith("sim-")
    assert sent["reference"] == "gsm"
    assert sent["status"] == "accepted"
    assert (sent["segments"], sent["encoding"], sent["cost"]) == (2, "GSM-7", 4)
    assert sent["balance"] == 96
    assert await balance(client, account) == 96
    by_id = (await client.get(f"/v1/messages/{sent['id']}", headers=account.auth)).json()
    assert by_id["reference"] == "gsm"
    assert by_id["segments"] == 2
    assert by_id["cost"] == 4
    assert by_id["body"] == body


async def test_ucs2_message_is_counted_in_utf16_units(
    client: httpx.AsyncClient, account: Account
) -> None:
    # The em dash forces UCS-2: 71 characters need two 67-unit segments.
    body = "Rendez-vous demain — " + "x" * 50
    assert len(body) == 71

    response = await client.post("/v1/messages", json=message(body=body), headers=account.auth)

    assert response.status_code == 201, response.text
    sent = response.json()
    assert (sent["segments"], sent["encoding"], sent["cost"], sent["balance"]) == (
        2,
        "UCS-2",
        2,
        98,
    )
    short = await client.post(
        "/v1/messages", json=message(body="À demain ☕"), headers=account.auth
    )
    assert (short.json()["segments"], short.json()["encoding"]) == (1, "UCS-2")
    assert await balance(client, account) == 97


async def test_second_post_with_same_reference_replays_and_debits_nothing(
    client: httpx.AsyncClient, account: Account
) -> None:
    body = message("appt-42")
    first = await client.post("/v1/messages", json=body, headers=account.auth)
    second = await client.post("/v1/messages", json=body, headers=account.auth)

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json() == {**first.json(), "duplicate": True}
    assert await balance(client, account) == 99
    assert len(await stored(client, account)) == 1
    outcomes = [
        (s["reference"], s["outcome"], s["status_code"]) for s in await submissions(client, account)
    ]
    assert outcomes == [("appt-42", "accepted", 201), ("appt-42", "duplicate", 200)]


async def test_concurrent_duplicates_are_accepted_once(
    client: httpx.AsyncClient, account: Account
) -> None:
    # Latency keeps all twenty requests in flight at the same time inside the simulator.
    await client.put("/v1/admin/faults", json={"latency_ms": [50, 150]})
    body = message("same-ref")

    responses = await asyncio.gather(
        *(client.post("/v1/messages", json=body, headers=account.auth) for _ in range(20))
    )

    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 19 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await balance(client, account) == 99
    assert len(await stored(client, account)) == 1
    outcomes = [s["outcome"] for s in await submissions(client, account)]
    assert outcomes.count("accepted") == 1
    assert outcomes.count("duplicate") == 19


async def test_concurrent_sends_never_overdraw(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account(credits=5)
    await client.put("/v1/admin/faults", json={"latency_ms": [20, 80]})

    responses = await asyncio.gather(
        *(client.post("/v1/messages", json=message(), headers=account.auth) for _ in range(12))
    )

    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * 5 + [402] * 7
    assert await balance(client, account) == 0
    assert len(await stored(client, account)) == 5


async def test_insufficient_credits_stores_nothing_and_top_up_restores_sending(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account(credits=1)
    two_segments = message("long", body="b" * 200)

    refused = await client.post("/v1/messages", json=two_segments, headers=account.auth)

    assert refused.status_code == 402
    assert refused.json() == {"error": "insufficient_credits", "balance": 1, "required": 2}
    lookup = await client.get("/v1/messages", params={"reference": "long"}, headers=account.auth)
    assert lookup.status_code == 404
    assert await stored(client, account) == []
    assert await balance(client, account) == 1

    topped = await client.post("/v1/topup", json={"amount": 5}, headers=account.auth)
    assert topped.status_code == 200
    assert topped.json()["balance"] == 6
    admin_view = (await client.get(f"/v1/admin/accounts/{account.name}")).json()
    assert [t["amount"] for t in admin_view["topups"]] == [5]

    retried = await client.post("/v1/messages", json=two_segments, headers=account.auth)
    assert retried.status_code == 201
    assert retried.json()["balance"] == 4
    outcomes = [s["outcome"] for s in await submissions(client, account)]
    assert outcomes == ["insufficient_credits", "accepted"]


@pytest.mark.parametrize("amount", [0, -3, "5", 1.5])
async def test_top_up_needs_a_positive_integer(
    client: httpx.AsyncClient, account: Account, amount: object
) -> None:
    response = await client.post("/v1/topup", json={"amount": amount}, headers=account.auth)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.json()["field"] == "amount"
    assert await balance(client, account) == 100


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Basic c2ltOmtleQ=="}],
    ids=["missing", "wrong", "not-bearer"],
)
async def test_wrong_or_missing_key_is_401(
    client: httpx.AsyncClient, account: Account, headers: dict[str, str]
) -> None:
    reference = "unauth"
    responses = [
        await client.post("/v1/messages", json=message(reference), headers=headers),
        await client.get("/v1/balance", headers=headers),
        await client.get("/v1/messages", params={"reference": reference}, headers=headers),
        await client.get("/v1/messages/sim-anything", headers=headers),
        await client.post("/v1/topup", json={"amount": 5}, headers=headers),
    ]
    for response in responses:
        assert response.status_code == 401, response.request.url
        assert response.json() == {"error": "unauthorized"}
    assert await balance(client, account) == 100
    everyone = (await client.get("/v1/admin/submissions", params={"reference": reference})).json()
    assert everyone[-1]["outcome"] == "unauthorized"
    assert everyone[-1]["account"] is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reference": None}, "reference"),
        ({"reference": ""}, "reference"),
        ({"reference": "r" * 101}, "reference"),
        ({"to": "07700900123"}, "to"),
        ({"to": "+44 7700 900123"}, "to"),
        ({"from": None}, "from"),
        ({"from": "ThisIsTooLongASender"}, "from"),
        ({"body": None}, "body"),
        ({"body": "x" * 1601}, "body"),
        ({"callback_url": "ftp://example.com/hook"}, "callback_url"),
    ],
)
async def test_validation_errors_name_the_field(
    client: httpx.AsyncClient, account: Account, change: dict[str, object], field: str
) -> None:
    body = {k: v for k, v in {**message(), **change}.items() if v is not None}

    response = await client.post("/v1/messages", json=body, headers=account.auth)

    assert response.status_code == 400
    error = response.json()
    assert error["error"] == "invalid_request"
    assert error["field"] == field
    assert error["detail"]
    assert await stored(client, account) == []
    assert await balance(client, account) == 100
    assert [s["outcome"] for s in await submissions(client, account)] == ["invalid"]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe"])
async def test_a_body_that_is_not_a_json_object_is_400(
    client: httpx.AsyncClient, account: Account, raw: bytes
) -> None:
    response = await client.post(
        "/v1/messages",
        content=raw,
        headers={**account.auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.json()["field"] is None


async def test_unknown_messages_are_404_and_accounts_cannot_see_each_other(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    alice, bob = await make_account(), await make_account()
    sent = (await client.post("/v1/messages", json=message("mine"), headers=alice.auth)).json()

    assert (await client.get("/v1/messages/sim-unknown", headers=alice.auth)).status_code == 404
    missing = await client.get("/v1/messages", params={"reference": "nope"}, headers=alice.auth)
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found"}
    assert (await client.get(f"/v1/messages/{sent['id']}", headers=bob.auth)).status_code == 404
    theirs = await client.get("/v1/messages", params={"reference": "mine"}, headers=bob.auth)
    assert theirs.status_code == 404
    # The same reference is independent per account.
    own = await client.post("/v1/messages", json=message("mine"), headers=bob.auth)
    assert own.status_code == 201
    assert own.json()["id"] != sent["id"]


async def test_rate_limit_answers_429_with_whole_second_retry_after(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    # 0.1 message/s: the burst is one message, the next token 10 s away.
    account = await make_account(rate_per_second=0.1)

    first = await client.post("/v1/messages", json=message("first"), headers=account.auth)
    second = await client.post("/v1/messages", json=message("second"), headers=account.auth)

    assert first.status_code == 201
    assert second.status_code == 429
    assert second.json() == {"error": "rate_limited"}
    retry_after = second.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= 10
    lookup = await client.get("/v1/messages", params={"reference": "second"}, headers=account.auth)
    assert lookup.status_code == 404
    assert await balance(client, account) == 99
    assert [s["outcome"] for s in await submissions(client, account)] == [
        "accepted",
        "rejected_429",
    ]


async def test_rate_limit_allows_a_burst_equal_to_the_rate(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account(rate_per_second=5)

    started = time.monotonic()
    responses = await asyncio.gather(
        *(client.post("/v1/messages", json=message(), headers=account.auth) for _ in range(30))
    )
    elapsed = time.monotonic() - started

    accepted = [r.status_code for r in responses].count(201)
    # The burst of five, plus whatever refilled (5/s) while the requests were arriving.
    assert 5 <= accepted <= 5 + math.ceil(elapsed * 5), (accepted, elapsed)
    rejected = [r for r in responses if r.status_code == 429]
    assert len(rejected) == 30 - accepted
    assert rejected, "thirty requests at once must exceed a burst of five"
    assert all(r.headers["Retry-After"] == "1" for r in rejected)
