"""Gateway scenarios every provider dialect runs (`test_<kind>.py` calls them): receipts and
replies through the path-secured webhooks, forged and off-list callers refused, credits run
out → held → topped up → resumed, and never twice under injected faults."""

from __future__ import annotations

import json
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from nats.aio.client import Client

from services.sms_gateway.adapters.providers.catalogue import CONTENT_SEARCHED, TOPUP_PAGES
from shared.bus import subjects
from shared.bus.topology import DISPATCH, INBOUND
from tests.integration.sms_gateway.harness import (
    SENDER,
    AccountTicks,
    Sim,
    SimAccount,
    account_of,
    assert_exactly_once,
    at_least,
    events,
    gateway_running,
    handlers,
    make_site,
    midday_zone,
    number,
    provider_events,
    submit,
    terminal,
    wait_terminal,
)
from tests.support.waiting import wait_until

RECEIPTS = ("stagger.dispatch.delivered", "stagger.dispatch.undelivered")
UNITS = {
    "clicksend": "money",
    "vonage": "money",
    "messagemedia": "credits",
    "kudosity": "money",
    "esendex": "credits",
    "tnz": "money",
}
"""The balance unit each provider reports."""
SENDERS = {"tnz": "2210"}
"""Our sender where the provider needs other than a number (New Zealand's short codes)."""


async def provider_site(
    nc: Client, sim: Sim, kind: str, account: SimAccount, token: str, **provider: Any
) -> dict[str, str]:
    """A site sending through `account` of the simulator's `kind` dialect."""
    group, site = f"g-{kind}-{secrets.token_hex(3)}", f"s-{kind}-{secrets.token_hex(3)}"
    h = handlers(nc)
    await h.create_group(group, group, {}, actor="test")
    settings = {
        "kind": kind,
        "account_id": account.name,
        # Esendex logs in with a login and a token beside the account reference.
        "secret": f"{account.name}:{account.api_key}" if kind == "esendex" else account.api_key,
        "base_url": f"{sim.url}/{kind}",
        "rate_per_second": 50,
        "webhook_secret": token,
        **provider,
    }
    await h.create_site(
        group,
        site,
        {"name": site, "timezone": midday_zone()},
        {
            "sms": {
                "provider": settings,
                "sender_id": SENDERS.get(kind, SENDER),
                "mode": "immediate",
            }
        },
        actor="test",
    )
    base = f"{sim.url}/{kind}"
    return {
        "group": group,
        "site": site,
        "account": account_of(kind, account.name, base, group),
    }


DIALECTS = ("clicksend", "vonage", "messagemedia", "kudosity", "esendex", "tnz")
"""Every provider dialect of the simulator (Twilio is tested against its own double)."""


async def sending_site(
    nc: Client, sim: Sim, kind: str, *, rate: float, **account: Any
) -> tuple[SimAccount, dict[str, str]]:
    """A fresh simulator account speaking `kind` ("simulator": the simulator's own API) and a
    site sending through it at `rate` per second, without webhooks."""
    if kind == "simulator":
        found = await sim.account(**account)
        return found, await make_site(nc, sim, found, rate=rate)
    found = await sim.account(dialect=kind, **account)
    token = secrets.token_urlsafe(24)
    return found, await provider_site(nc, sim, kind, found, token, rate_per_second=rate)


async def assert_stored_once(sim: Sim, account: SimAccount, kind: str, ids: list[str]) -> None:
    """Counted at the simulator: each message stored exactly once, none POSTed again after.

    Providers with no reference on the wire (`CONTENT_SEARCHED`) are counted by recipient:
    message i went to `number(i)`, and a second send would be a second stored message."""
    stored = await sim.stored(account)
    if kind in CONTENT_SEARCHED:
        assert Counter(m["to"] for m in stored) == Counter(number(i) for i in range(len(ids)))
    else:
        assert_exactly_once(await sim.submissions(account), ids)
        assert len(stored) == len(ids)


async def ours(nc: Client, event_type: str, account: str) -> list[Any]:
    """The provider events of this type about `account` (the stream outlives one test)."""
    return [e for e in await provider_events(nc, event_type) if e.data.account == account]


async def provider_test(nc: Client, site: dict[str, str]) -> dict[str, Any]:
    reply = await nc.request(
        subjects.rpc("sms_gateway", "provider_test"),
        json.dumps({"site_id": site["site"], "group_id": site["group"]}).encode(),
        timeout=15,
    )
    return dict(json.loads(reply.data))


async def receipts_and_replies_come_through_the_secret_path(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim, kind: str
) -> None:
    """Receipts settle the account's messages, a reply is attributed, forgeries are refused."""
    token = secrets.token_urlsafe(24)
    account = await sim.account(
        credits=20, dialect=kind, undeliverable_prefixes=[number(2)], webhook_secret=token
    )
    site = await provider_site(nc, sim, kind, account, token)
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        hook = f"{gw.webhook_base_url()}/webhooks/sms/{kind}/{account.name}"
        await sim.update(
            account, webhook_url=f"{hook}/{token}/receipt", inbound_url=f"{hook}/{token}/inbound"
        )
        tested = await provider_test(nc, site)
        ids = await submit(nc, site["site"], 3)
        async with AccountTicks(nc, site["account"], [site["site"]], rate=50):
            await wait_terminal(nc, ids)
        await wait_until(
            lambda: at_least(nc, DISPATCH, 3, *RECEIPTS), timeout=45, message="3 receipts"
        )
        await sim.reply(account, number(0), "STOP", in_reply_to=ids[0])
        await wait_until(lambda: at_least(nc, INBOUND, 1), timeout=20, message="the reply")
        async with httpx.AsyncClient(trust_env=False) as http:
            forged = await http.post(
                f"{hook}/{'x' * 32}/inbound",
                data={"message_id": "forged", "from": number(1), "to": SENDER, "body": "START"},
            )
            other = await http.post(
                f"{gw.webhook_base_url()}/webhooks/sms/{kind}/someone-else/{token}/inbound",
                data={"message_id": "forged2", "from": number(1), "to": SENDER, "body": "START"},
            )
    assert tested["ok"] is True and tested["unit"] == UNITS[kind], tested
    assert (forged.status_code, other.status_code) == (401, 401)
    receipts = {e.data.message_id: e.type for e in await events(nc, DISPATCH) if e.type in RECEIPTS}
    assert receipts == {
        ids[0]: "stagger.dispatch.delivered",
        ids[1]: "stagger.dispatch.delivered",
        ids[2]: "stagger.dispatch.undelivered",
    }
    replies = [e.data for e in await events(nc, INBOUND)]
    assert [(r.kind, r.provider) for r in replies] == [("optout", kind)]
    # Providers that name the message replied to let the reply point at it; the others are
    # matched by number (the latest message to that patient from the account).
    assert replies[0].in_reply_to == ids[0]


async def webhooks_from_outside_the_allow_list_are_refused(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim, kind: str
) -> None:
    """A caller outside `webhook_sources` is refused even with the right path."""
    token = secrets.token_urlsafe(24)
    account = await sim.account(credits=20, dialect=kind, webhook_secret=token)
    site = await provider_site(nc, sim, kind, account, token, webhook_sources=["192.0.2.0/24"])
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        assert (await provider_test(nc, site))["ok"] is True
        url = f"{gw.webhook_base_url()}/webhooks/sms/{kind}/{account.name}/{token}/inbound"
        form = {"message_id": "in-1", "from": number(1), "to": SENDER, "body": "hello"}
        async with httpx.AsyncClient(trust_env=False) as http:
            refused = await http.post(url, data=form)
    assert refused.status_code == 401
    assert await events(nc, INBOUND) == []


async def credits_run_out_then_resume_and_nothing_goes_twice_under_faults(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim, kind: str
) -> None:
    """Held when the money runs out, resumed once topped up; each message stored once."""
    account = await sim.account(credits=12, dialect=kind)
    site = await provider_site(nc, sim, kind, account, secrets.token_urlsafe(24))
    await sim.faults(
        seed=11,
        rate_429=0.07,
        retry_after_seconds=1,
        rate_5xx=0.07,
        rate_timeout_after_accept=0.07,
        timeout_hold_seconds=1,
    )
    async with gateway_running(nats_url, database_url, tmp_path, http_timeout_seconds=0.5):
        ids = await submit(nc, site["site"], 20)
        async with AccountTicks(nc, site["account"], [site["site"]], rate=50):
            await wait_until(
                lambda: ours(nc, "stagger.credits.sending_held", site["account"]),
                timeout=60,
                message="a held event about the account",
            )
            assert len(await sim.stored(account)) == 12
            await sim.update(account, credits=100)  # topped up in the provider's dashboard
            await wait_terminal(nc, ids, timeout=90)
    if kind in CONTENT_SEARCHED:
        # No reference on the wire: every message went to a number of its own.
        stored = Counter(m["to"] for m in await sim.stored(account))
        assert stored == Counter(number(i) for i in range(20)), "each stored exactly once"
    else:
        assert_exactly_once(await sim.submissions(account), ids)
    ends = await terminal(nc)
    assert {ends[i][0].type for i in ids} == {"stagger.dispatch.sent"}
    assert await ours(nc, "stagger.credits.sending_held", site["account"])
    assert await ours(nc, "stagger.credits.sending_resumed", site["account"])
    # No provider here has a top-up call: the admins are asked to buy credit at its page.
    (needed, *_) = await ours(nc, "stagger.credits.topup_needed", site["account"])
    assert needed.data.topup_url == TOPUP_PAGES[kind]
    assert needed.data.reason.startswith("no credits left")
