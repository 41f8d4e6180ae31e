"""Sending on ticks: budgets, spacing, receipts, segments and cost, balance events."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path

from nats.aio.client import Client

from shared.bus.topology import DISPATCH, PROVIDERS
from tests.integration.dispatch.harness import send_tick
from tests.integration.sms_gateway.harness import (
    Sim,
    at_least,
    events,
    gateway_running,
    make_site,
    submit,
    terminal,
    wait_queued,
    wait_terminal,
    webhook_url,
)
from tests.support.waiting import wait_until


async def test_ticks_release_messages_spaced_and_receipts_follow(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        account = await sim.account(webhook=webhook_url(gw))
        site = await make_site(nc, sim, account, mode="staggered")
        # 159 characters, but "{" and "}" take two septets each: 161, two segments.
        ids = await submit(nc, site["site"], 4, body="Hello {} " + "x" * 150)
        await wait_queued(gw, 4)
        assert await sim.submissions(account) == [], "nothing goes without a tick"
        await send_tick(nc, site["site"], budget=3, spacing=0.5)
        await wait_terminal(nc, ids[:3])  # oldest first
        assert len(await sim.submissions(account)) == 3, "the tick's budget holds"
        assert await gw.engine.queue.depth() == 1
        await send_tick(nc, site["site"], budget=5)
        await wait_terminal(nc, ids)
        await wait_until(
            lambda: at_least(nc, DISPATCH, 4, "stagger.dispatch.delivered"),
            timeout=20,
            message="4 delivered events",
        )
    stored = await sim.stored(account)
    assert sorted(m["reference"] for m in stored) == sorted(ids)
    first_three = sorted(stored, key=lambda m: m["accepted_at"])[:3]
    times = [datetime.fromisoformat(m["accepted_at"]) for m in first_three]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(g >= 0.45 for g in gaps), gaps
    ends = await terminal(nc)
    sent = [ends[i][0] for i in ids]
    assert {e.type for e in sent} == {"stagger.dispatch.sent"}
    # Two segments, two credits each; the provider id is the simulator's.
    assert {e.data.segments for e in sent} == {2}
    assert {e.data.cost for e in sent} == {2}
    assert all(e.data.provider_message_id.startswith("sim-") for e in sent)
    balance = [
        e for e in await events(nc, PROVIDERS) if e.type == "stagger.credits.balance_reported"
    ]
    assert balance, "balance reported after sends"
    assert balance[-1].data.balance == 100_000 - 8
    assert sum(e.data.sends for e in balance) == 4
