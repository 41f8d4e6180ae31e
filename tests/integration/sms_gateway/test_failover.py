"""Failover: the primary account runs out of credit mid-batch and sending continues on the
site's secondary account, each message once, its sent event naming the account that sent it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from shared.bus.topology import DISPATCH
from shared.runtime.nats_server import free_port
from tests.integration.sms_gateway.dialect_scenarios import provider_test
from tests.integration.sms_gateway.harness import (
    WEBHOOK_SECRET,
    AccountTicks,
    Sim,
    SimAccount,
    account_of,
    assert_exactly_once,
    events,
    gateway_running,
    make_site,
    provider_events,
    submit,
    terminal,
    wait_terminal,
    webhook_url,
)
from tests.support.waiting import wait_until

MESSAGES = 1000
PRIMARY_CREDITS = 400
RATE = 250
DELIVERED = "stagger.dispatch.delivered"


def secondary(sim: Sim, account: SimAccount) -> dict[str, Any]:
    """The settings of a secondary simulator account."""
    return {
        "kind": "simulator",
        "account_id": account.name,
        "secret": account.api_key,
        "base_url": sim.url,
        "rate_per_second": RATE,
        "webhook_secret": WEBHOOK_SECRET,
    }


async def test_primary_out_of_credit_mid_batch_fails_over_and_sends_each_message_once(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    primary = await sim.account(credits=PRIMARY_CREDITS)
    spare = await sim.account(credits=100_000)
    site = await make_site(
        nc,
        sim,
        primary,
        rate=RATE,
        sms={"secondary_provider": secondary(sim, spare), "low_credit_threshold": 0},
    )
    spare_account = account_of("simulator", spare.name, sim.url, site["group"])
    async with gateway_running(nats_url, database_url, tmp_path):
        ids = await submit(nc, site["site"], MESSAGES)
        async with AccountTicks(nc, site["account"], [site["site"]], rate=RATE):
            await wait_terminal(nc, ids, timeout=80)
            held = await wait_until(
                lambda: provider_events(nc, "stagger.credits.sending_held"),
                timeout=10,
                message="the primary's held event",
            )

    # Counted at the provider: every message accepted exactly once, on one account or the
    # other, and never POSTed again after that.
    on_primary = await sim.submissions(primary)
    on_spare = await sim.submissions(spare)
    assert_exactly_once([*on_primary, *on_spare], ids)
    stored = {
        primary.name: {m["reference"] for m in await sim.stored(primary)},
        spare.name: {m["reference"] for m in await sim.stored(spare)},
    }
    assert len(stored[primary.name]) == PRIMARY_CREDITS
    assert len(stored[spare.name]) == MESSAGES - PRIMARY_CREDITS
    assert not stored[primary.name] & stored[spare.name]

    # One terminal event each, `sent`, naming the account the provider stored it on.
    ends = await terminal(nc)
    assert all(len(ends[i]) == 1 for i in ids)
    assert {ends[i][0].type for i in ids} == {"stagger.dispatch.sent"}
    expected = {
        **dict.fromkeys(stored[primary.name], site["account"]),
        **dict.fromkeys(stored[spare.name], spare_account),
    }
    named = {i: ends[i][0].data.account for i in ids}  # type: ignore[attr-defined]
    wrong = {i: (named[i], expected[i]) for i in ids if named[i] != expected[i]}
    assert not wrong, f"{len(wrong)} sent events name another account: {list(wrong.items())[:3]}"
    assert Counter(named.values()) == {
        site["account"]: PRIMARY_CREDITS,
        spare_account: MESSAGES - PRIMARY_CREDITS,
    }

    # The primary was held for credit; the secondary never was.
    assert {e.data.account for e in held} == {site["account"]}
    assert "no credits" in held[0].data.reason


async def test_an_outage_of_the_primary_longer_than_the_limit_fails_over(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    # The primary's address answers nothing (connection refused): an outage that never ends.
    dead = f"http://127.0.0.1:{free_port()}"
    primary, spare = await sim.account(), await sim.account()
    unreachable = {**secondary(sim, primary), "base_url": dead}
    site = await make_site(
        nc,
        sim,
        primary,
        rate=50,
        sms={
            "provider": unreachable,
            "secondary_provider": secondary(sim, spare),
            "failover_after_seconds": 1,
        },
    )
    primary_account = account_of("simulator", primary.name, dead, site["group"])
    spare_account = account_of("simulator", spare.name, sim.url, site["group"])
    async with gateway_running(nats_url, database_url, tmp_path):
        ids = await submit(nc, site["site"], 50)
        async with AccountTicks(nc, primary_account, [site["site"]], rate=50):
            await wait_terminal(nc, ids, timeout=60)
    assert_exactly_once(await sim.submissions(spare), ids)
    ends = await terminal(nc)
    assert {ends[i][0].type for i in ids} == {"stagger.dispatch.sent"}
    assert {ends[i][0].data.account for i in ids} == {spare_account}  # type: ignore[attr-defined]
    held = await provider_events(nc, "stagger.credits.sending_held")
    assert [e.data.account for e in held] == [primary_account]  # type: ignore[attr-defined]
    assert "unreachable for" in held[0].data.reason  # type: ignore[attr-defined]


async def test_receipts_through_the_secondary_account_reach_the_messages_it_sent(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        hook = webhook_url(gw)
        primary = await sim.account(credits=2, webhook=hook)
        spare = await sim.account(webhook=hook)
        site = await make_site(
            nc, sim, primary, rate=50, sms={"secondary_provider": secondary(sim, spare)}
        )
        # The Test proves both accounts' credentials (the secondary's webhooks need it too).
        tested = await provider_test(nc, site)
        assert tested["ok"] is True and tested["balance"] == 2, tested
        assert tested["secondary"]["ok"] is True, tested
        assert tested["secondary"]["balance"] != tested["balance"], "the spare's own balance"
        ids = await submit(nc, site["site"], 6)
        async with AccountTicks(nc, site["account"], [site["site"]], rate=50):
            await wait_terminal(nc, ids, timeout=60)

            async def all_delivered() -> bool:
                found = await events(nc, DISPATCH)
                done = {e.data.message_id for e in found if e.type == DELIVERED}  # type: ignore[attr-defined]
                return set(ids) <= done

            await wait_until(all_delivered, timeout=30, message="6 delivered")
    assert len(await sim.stored(primary)) == 2
    assert len(await sim.stored(spare)) == 4
