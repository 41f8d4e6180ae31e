"""Credits: one `low` and at most one top-up per crossing of the threshold, with two gateway
replicas and provider answers overtaking one another (counted at the simulator).

The simulator delays requests before the debit (`latency_ms`) and holds answers back after it
(`answer_delay_ms`), so an answer can carry a balance older than answers already seen, on
either replica, and the order in which requests left is not the order they were debited in.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from shared.bus.topology import PROVIDERS
from tests.integration.sms_gateway.harness import (
    AccountTicks,
    Sim,
    SimAccount,
    assert_exactly_once,
    events,
    gateway_process,
    make_site,
    submit,
    terminal,
    wait_terminal,
)
from tests.integration.sms_provider_sim.harness import SimProcess, simulator_running
from tests.support.processes import ServiceProcess
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
async def credit_sim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SimProcess]:
    """A simulator of this module's own (faults are global to a simulator)."""
    async with simulator_running(
        tmp_path_factory.mktemp("credit-sim"),
        STAGGER_SIM_SEED="1717",
        STAGGER_SIM_RECEIPT_DELAY_SECONDS="0.3",
    ) as process:
        yield process


@pytest.fixture
async def sim(credit_sim: SimProcess) -> AsyncIterator[Sim]:
    helper = Sim(credit_sim.url)
    yield helper
    await helper.clear_faults()


def provider(sim: Sim, account: SimAccount, credits_per_segment: float) -> dict[str, Any]:
    return {
        "kind": "simulator",
        "account_id": account.name,
        "secret": account.api_key,
        "base_url": sim.url,
        "rate_per_second": 50,
        "credits_per_segment": credits_per_segment,
    }


async def credit_events(nc: Client, account: str) -> list[Any]:
    return [e for e in await events(nc, PROVIDERS, "credits.>") if e.data.account == account]


def kinds(found: list[Any]) -> Counter[str]:
    return Counter(e.type.removeprefix("stagger.credits.") for e in found)


async def credit_site(
    nc: Client, sim: Sim, account: SimAccount, *, threshold: int, topup: int
) -> dict[str, str]:
    """A site paying 10 credits a message, low below `threshold`, topped up by `topup`."""
    return await make_site(
        nc,
        sim,
        account,
        rate=50,
        sms={
            "provider": provider(sim, account, 10),
            "low_credit_threshold": threshold,
            "auto_topup_amount": topup,
        },
    )


def two_replicas(
    nats_url: str, database_url: str, tmp_path: Path, name: str
) -> list[ServiceProcess]:
    """Two gateway replicas taking one tick at a time each, reporting balances often."""
    return [
        gateway_process(
            nats_url,
            tmp_path / f"var-{n}",
            database_url,
            f"{name}-{n}",
            resume_poll_seconds="0.5",
            balance_report_seconds="0.5",
            tick_workers="1",
        )
        for n in (1, 2)
    ]


async def test_two_replicas_one_low_and_one_top_up_then_held_and_resumed(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    # 10 credits a message, 100 credits, low below 50: the 6th send crosses (40 left). The
    # automatic top-up of 5 cannot lift it back over 50 (at most 45), so the crossing lasts
    # until the credits run out: 105 credits pay for exactly 10 of the 25 messages.
    account = await sim.account(credits=100, credits_per_segment=10)
    site = await credit_site(nc, sim, account, threshold=50, topup=5)
    await sim.faults(seed=11, latency_ms=[0, 200], answer_delay_ms=[0, 1000])
    replicas = two_replicas(nats_url, database_url, tmp_path, "credits")
    try:
        ids = await submit(nc, site["site"], 25)
        # Ticks of 2 sends every 0.04 s, one at a time per replica: while one replica waits
        # for its answers, the other takes the next tick, and both see balances.
        ticking = AccountTicks(nc, site["account"], [site["site"]], rate=50, period=0.04)
        async with ticking as ticks:
            await wait_until(
                lambda: _has(nc, site["account"], "sending_held"), timeout=60, message="held"
            )
            # The answers held back come in; the replicas keep getting ticks while held, and
            # nothing more is sent or lost.
            await wait_until(lambda: _count(terminal(nc), 10), timeout=30, message="10 sent")
            seen = ticks.published
            await wait_until(lambda: ticks.published >= seen + 10, timeout=20, message="ticks")
            assert len(await sim.stored(account)) == 10
            assert len(await terminal(nc)) == 10
            # Credits added at the provider (not a top-up): sending resumes by itself.
            await sim.update(account, credits=1000)
            await wait_terminal(nc, ids, timeout=90)
        sends = [_sends(r.url) for r in replicas]
    finally:
        for replica in replicas:
            replica.stop()
    assert all(n > 0 for n in sends), f"both replicas sent: {sends}"
    view = await sim.view(account)
    assert [t["amount"] for t in view["topups"]] == [5], "one top-up reached the provider"
    assert_exactly_once(await sim.submissions(account), ids)
    ends = await terminal(nc)
    assert Counter(len(ends[i]) for i in ids) == Counter({1: 25})
    assert {ends[i][0].type for i in ids} == {"stagger.dispatch.sent"}
    found = await credit_events(nc, site["account"])
    counts = kinds(found)
    assert counts["low"] == 1 and counts["topup_requested"] == 1, counts
    assert counts["sending_held"] == 1 and counts["sending_resumed"] == 1, counts
    low = next(e for e in found if e.type == "stagger.credits.low")
    assert 0 <= low.data.balance < 50
    assert view["credits"] == 1000 - 15 * 10


async def test_answers_overtaking_one_another_on_two_replicas_give_no_second_low(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    # 10 credits a message, 300 credits, low below 250, an automatic top-up of 300: the
    # crossing's top-up lifts the balance back over 250 while sends begun before it are still
    # unanswered; their answers (older, lower balances) come back afterwards, on either
    # replica. 30 messages cost 300 of the 600 credits: the balance never really goes below
    # 250 again, so there is one crossing.
    account = await sim.account(credits=300, credits_per_segment=10)
    site = await credit_site(nc, sim, account, threshold=250, topup=300)
    await sim.faults(seed=3, latency_ms=[0, 200], answer_delay_ms=[0, 1000])
    replicas = two_replicas(nats_url, database_url, tmp_path, "overtaking")
    try:
        ids = await submit(nc, site["site"], 30)
        async with AccountTicks(nc, site["account"], [site["site"]], rate=50, period=0.04):
            await wait_terminal(nc, ids, timeout=90)
        sends = [_sends(r.url) for r in replicas]
    finally:
        for replica in replicas:
            replica.stop()
    assert all(n > 0 for n in sends), f"both replicas sent: {sends}"
    submissions = await sim.submissions(account)
    assert_exactly_once(submissions, ids)
    arrived = [s["reference"] for s in submissions if s["outcome"] == "accepted"]
    debited = [m["reference"] for m in await sim.stored(account)]
    assert sorted(arrived) == sorted(debited) and arrived != debited, "debits were reordered"
    view = await sim.view(account)
    assert [t["amount"] for t in view["topups"]] == [300], "one top-up reached the provider"
    assert view["credits"] == 600 - 30 * 10
    counts = kinds(await credit_events(nc, site["account"]))
    assert counts["low"] == 1 and counts["topup_requested"] == 1, counts
    # Credits may run out for a moment before the top-up lands: then sending resumed.
    assert counts["sending_held"] == counts["sending_resumed"] <= 1, counts


async def _count(found: Awaitable[dict[str, Any]], n: int) -> bool:
    return len(await found) == n


async def _has(nc: Client, account: str, kind: str) -> bool:
    return kinds(await credit_events(nc, account))[kind] > 0


def _sends(url: str) -> float:
    """Messages one replica handed to a provider (its Prometheus counter)."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    found = re.search(r'^stagger_sends_total\{channel="sms"\} ([0-9.e+]+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0
