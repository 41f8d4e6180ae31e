"""Credits: run out mid-batch (held, nothing lost), resume after a top-up, low credit, auto
top-up, balance after a provider test."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from nats.aio.client import Client

from shared.bus.topology import PROVIDERS
from tests.integration.sms_gateway.harness import (
    AccountTicks,
    Sim,
    assert_exactly_once,
    events,
    gateway_running,
    make_site,
    provider_events,
    submit,
    terminal,
    wait_terminal,
)
from tests.support.waiting import wait_until


def kinds(found: list) -> Counter:
    return Counter(e.type.removeprefix("stagger.credits.") for e in found)


async def test_credits_run_out_mid_batch_then_sending_resumes_after_a_top_up(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    account = await sim.account(credits=10)
    site = await make_site(nc, sim, account, rate=50, sms={"low_credit_threshold": 5})
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        ids = await submit(nc, site["site"], 25)
        async with AccountTicks(nc, site["account"], [site["site"]], rate=50) as ticks:
            held = await wait_until(
                lambda: provider_events(nc, "stagger.credits.sending_held"),
                timeout=30,
                message="a held event",
            )
            # Ticks keep coming while held, and nothing more is sent or lost.
            seen = ticks.published
            await wait_until(lambda: ticks.published >= seen + 3, timeout=20, message="3 ticks")
            assert len(await sim.stored(account)) == 10
            assert await gw.engine.queue.depth(site["site"]) == 15
            assert len(await terminal(nc)) == 10
            # Top up at the provider: sending resumes with nobody touching the gateway.
            async with sim.client() as http:
                response = await http.post(
                    "/v1/topup",
                    json={"amount": 100},
                    headers={"Authorization": f"Bearer {account.api_key}"},
                )
            assert response.status_code == 200, response.text
            await wait_terminal(nc, ids, timeout=60)
    assert_exactly_once(await sim.submissions(account), ids)
    ends = await terminal(nc)
    assert {ends[i][0].type for i in ids} == {"stagger.dispatch.sent"}
    credit_events = await events(nc, PROVIDERS, "credits.>")
    counts = kinds(credit_events)
    assert counts["sending_held"] == 1 and counts["sending_resumed"] == 1, counts
    assert counts["low"] == 1, counts
    assert held[0].data.account == site["account"]
    assert "no credits" in held[0].data.reason
    resumed = next(e for e in credit_events if e.type == "stagger.credits.sending_resumed")
    assert resumed.data.balance == 100


async def test_low_credit_requests_an_automatic_top_up_once(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    account = await sim.account(credits=30)
    site = await make_site(
        nc,
        sim,
        account,
        rate=50,
        sms={"low_credit_threshold": 20, "auto_topup_amount": 100},
    )
    async with gateway_running(nats_url, database_url, tmp_path):
        ids = await submit(nc, site["site"], 15)
        async with AccountTicks(nc, site["account"], [site["site"]], rate=50):
            await wait_terminal(nc, ids, timeout=60)
            await wait_until(
                lambda: provider_events(nc, "stagger.credits.topup_requested"),
                timeout=10,
                message="top-up event",
            )
    view = await sim.view(account)
    assert [t["amount"] for t in view["topups"]] == [100]
    assert view["credits"] == 30 - 15 + 100
    counts = kinds(await events(nc, PROVIDERS, "credits.>"))
    assert counts["low"] == 1 and counts["topup_requested"] == 1, counts
    assert counts["sending_held"] == 0, counts
    topup = (await provider_events(nc, "stagger.credits.topup_requested"))[0]
    assert topup.data.ok is True
    assert topup.data.balance_before < 20 <= topup.data.balance_after
