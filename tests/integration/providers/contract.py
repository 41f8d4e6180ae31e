"""What every provider adapter must do against its simulator dialect, over HTTP.

Each provider's test module builds its adapter and calls these checks; the simulator's core
supplies the faults (429 with Retry-After, 503, accept-then-drop, exhausted credits) whatever
the wire format.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from services.sms_gateway.adapters.providers import esendex
from services.sms_gateway.adapters.providers.base import (
    Found,
    Inbound,
    Outbound,
    Provider,
    ProviderError,
    Receipt,
)
from tests.integration.sms_gateway.harness import (
    Sim,
    SimAccount,
    assert_exactly_once,
    number,
    outcomes_by_reference,
)
from tests.integration.sms_provider_sim.harness import WebhookReceiver

SENDER = "+61491570999"
UNDELIVERABLE = "+61499999"


@dataclass
class Dialect:
    """One provider under test: how to build its adapter and read its webhooks."""

    name: str
    build: Callable[[httpx.AsyncClient, SimAccount, str], Provider]
    """(client, simulator account, simulator base URL) → adapter."""
    parse_receipt: Callable[[Mapping[str, Any], str], Receipt]
    parse_inbound: Callable[[Mapping[str, Any], str], Inbound]
    unit: str
    price: float = 0.05
    """Per segment (money dialects) or 1 credit."""
    references: bool = True
    """The wire carries our reference; without one, messages are told apart by recipient
    (every test message goes to a number of its own)."""
    sender: str = "+61491570999"
    """Our number (NZ short-code routes send from a short code)."""


def outbound(
    to: str | None = None, body: str = "Your appointment is at 10:00", sender: str = SENDER
) -> Outbound:
    """A message with a fresh reference."""
    return Outbound(
        reference=f"m-{secrets.token_hex(6)}",
        to=to or number(secrets.randbelow(10**6)),
        sender=sender,
        body=body,
        submitted_at=datetime.now(UTC),
    )


async def account(
    sim: Sim, dialect: Dialect, *, balance: float = 50, receiver: WebhookReceiver | None = None
) -> SimAccount:
    """A simulator account speaking the dialect (webhooks to the receiver, if any)."""
    hooks = {}
    if receiver is not None:
        tag = secrets.token_hex(4)
        hooks = {
            "webhook_url": receiver.url(f"/{dialect.name}/{tag}/receipt"),
            "inbound_url": receiver.url(f"/{dialect.name}/{tag}/inbound"),
        }
    return await sim.account(
        credits=balance,
        dialect=dialect.name,
        credits_per_segment=dialect.price,
        undeliverable_prefixes=[UNDELIVERABLE],
        **hooks,
    )


def key(dialect: Dialect, stored: Mapping[str, Any]) -> str:
    """What tells a stored message apart at the simulator."""
    return str(stored["reference"] if dialect.references else stored["to"])


def mine(dialect: Dialect, message: Outbound) -> str:
    """The same for one of ours."""
    return message.reference if dialect.references else message.to


def fields(body: bytes, content_type: str) -> dict[str, Any]:
    """A webhook body as fields (form, or a JSON object as it is)."""
    if "json" in content_type:
        return dict(json.loads(body))
    if "xml" in content_type:
        return esendex.flat(body)
    return dict(parse_qsl(body.decode(), keep_blank_values=True))


async def sends_looks_up_and_reports_balance(sim: Sim, dialect: Dialect, url: str) -> None:
    """Accepted with the provider's id, segments and cost; found by our reference; balance."""
    acct = await account(sim, dialect, balance=10)
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        adapter = dialect.build(client, acct, url)
        before = await adapter.balance()
        message = outbound(sender=dialect.sender, body="x" * 200)  # two GSM-7 parts
        reply = await adapter.send(message)
        assert reply.status == "accepted", reply
        stored = await sim.stored(acct)
        assert [key(dialect, m) for m in stored] == [mine(dialect, message)]
        assert reply.provider_message_id == stored[0]["id"]
        assert reply.segments in (2, None)  # some providers do not say at once
        found = await adapter.lookup(message)
        # Some providers' records do not say how many parts a message had.
        assert found == Found(True, stored[0]["id"], found.segments and 2, found.cost)
        # Sent long enough ago for any provider's records to have caught up.
        absent = replace(
            outbound(sender=dialect.sender), submitted_at=datetime.now(UTC) - timedelta(minutes=10)
        )
        assert (await adapter.lookup(absent)).sent is False
        after = await adapter.balance()
    assert before.unit == after.unit == dialect.unit
    assert before.amount - after.amount == pytest.approx(2 * dialect.price)


async def maps_errors(sim: Sim, dialect: Dialect, url: str) -> None:
    """429 → rate_limited with Retry-After; 5xx → unavailable; no credit → no_credit; a bad
    key → bad_credentials; an invalid number → refused."""
    acct = await account(sim, dialect)
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        adapter = dialect.build(client, acct, url)
        await sim.faults(rate_429=1.0, retry_after_seconds=3)
        limited = await adapter.send(outbound(sender=dialect.sender))
        await sim.faults(rate_5xx=1.0)
        unavailable = await adapter.send(outbound(sender=dialect.sender))
        await sim.faults(exhaust_credits=True)
        broke = await adapter.send(outbound(sender=dialect.sender))
        await sim.clear_faults()
        invalid = await adapter.send(outbound(sender=dialect.sender, to="12345"))
        wrong = dialect.build(client, SimAccount(acct.name, "not-the-key"), url)
        refused = await wrong.send(outbound(sender=dialect.sender))
        with pytest.raises(ProviderError) as balance_error:
            await wrong.balance()
    assert (limited.status, limited.retry_after) == ("rate_limited", 3)
    assert unavailable.status == "unavailable"
    assert broke.status == "no_credit"
    assert invalid.status == "refused"
    assert refused.status == "bad_credentials"
    assert balance_error.value.credentials is True
    assert await sim.stored(acct) == []


async def settles_an_unanswered_send(sim: Sim, dialect: Dialect, url: str) -> None:
    """Accepted, then the connection dropped: `ambiguous`, then found by the lookup."""
    acct = await account(sim, dialect)
    await sim.faults(rate_timeout_after_accept=1.0, timeout_hold_seconds=2)
    async with httpx.AsyncClient(trust_env=False, timeout=0.5) as client:
        adapter = dialect.build(client, acct, url)
        message = outbound(sender=dialect.sender)
        reply = await adapter.send(message)
        await sim.clear_faults()
        found = await adapter.lookup(message)
    assert reply.status == "ambiguous", reply
    assert found.sent is True
    assert [key(dialect, m) for m in await sim.stored(acct)] == [mine(dialect, message)]
    if dialect.references:
        assert outcomes_by_reference(await sim.submissions(acct))[message.reference] == {
            "accepted_then_timeout": 1
        }


async def settled(adapter: Provider, message: Outbound) -> bool:
    """Whether an uncertain send reached the provider, asking until it can tell."""
    for _ in range(20):
        found = await adapter.lookup(message)
        if found.sent is not None:
            return found.sent
    raise AssertionError(f"{message.reference}: the provider never could tell")


async def never_twice_under_faults(sim: Sim, dialect: Dialect, url: str, n: int = 30) -> None:
    """About 20 % injected faults; retrying the way the gateway does (look up what is
    uncertain, resend only what never arrived) stores each message exactly once."""
    acct = await account(sim, dialect, balance=10_000)
    await sim.faults(
        seed=7,
        rate_429=0.07,
        retry_after_seconds=0,
        rate_5xx=0.07,
        rate_timeout_after_accept=0.07,
        timeout_hold_seconds=1,
    )
    messages = [outbound(sender=dialect.sender) for _ in range(n)]
    async with httpx.AsyncClient(trust_env=False, timeout=0.5) as client:
        adapter = dialect.build(client, acct, url)
        for message in messages:
            for _ in range(40):
                reply = await adapter.send(message)
                if reply.status == "accepted":
                    break
                if reply.status == "ambiguous" and await settled(adapter, message):
                    break
                assert reply.status in ("rate_limited", "unavailable", "ambiguous"), reply
            else:
                raise AssertionError(f"{message.reference} never went")
    submissions = await sim.submissions(acct)
    stored = Counter(key(dialect, m) for m in await sim.stored(acct))
    assert stored == Counter(mine(dialect, m) for m in messages), "each stored exactly once"
    if dialect.references:
        assert_exactly_once(submissions, [m.reference for m in messages])
    faults = {s["outcome"] for s in submissions}
    assert {"rejected_429", "rejected_5xx", "accepted_then_timeout"} <= faults


async def delivers_receipts_and_replies(
    sim: Sim, dialect: Dialect, url: str, receiver: WebhookReceiver
) -> None:
    """Receipts (delivered, undelivered, a duplicate) and a reply, in the provider's shape."""
    acct = await account(sim, dialect, receiver=receiver)
    view = await sim.view(acct)
    receipt_path = view["webhook_url"].split(str(receiver.port), 1)[1]
    inbound_path = view["inbound_url"].split(str(receiver.port), 1)[1]
    await sim.faults(duplicate_receipt_rate=1.0)
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        adapter = dialect.build(client, acct, url)
        good, bad = (
            outbound(sender=dialect.sender),
            outbound(sender=dialect.sender, to=f"{UNDELIVERABLE}123"),
        )
        assert (await adapter.send(good)).status == "accepted"
        assert (await adapter.send(bad)).status == "accepted"
    deliveries = await receiver.wait_for(receipt_path, 4)
    receipts = [
        dialect.parse_receipt(fields(d.body, d.headers.get("content-type", "")), acct.name)
        for d in deliveries
    ]
    ids = {m["id"]: m["reference"] for m in await sim.stored(acct)}
    if not dialect.references:
        ids = {m["id"]: m["to"] for m in await sim.stored(acct)}
    by_ref = {(r.reference or ids[r.provider_message_id or ""], r.delivered) for r in receipts}
    assert by_ref == {(mine(dialect, good), True), (mine(dialect, bad), False)}
    assert all(r.account_id == acct.name for r in receipts)
    assert len(receipts) == 4, "each receipt came twice"
    await sim.reply(acct, good.to, "YES", to=dialect.sender, in_reply_to=good.reference)
    (delivery,) = await receiver.wait_for(inbound_path, 1)
    reply = dialect.parse_inbound(
        fields(delivery.body, delivery.headers.get("content-type", "")), acct.name
    )
    assert (reply.from_number, reply.body) == (good.to, "YES")
    assert reply.to in (dialect.sender, "")  # some providers do not name our number
    assert reply.in_reply_to in (good.reference, None)
