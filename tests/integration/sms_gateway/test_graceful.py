"""Graceful operation: SIGTERM drains in-flight sends.

The drain test is what an orchestrator's rolling update does to a gateway: SIGTERM in the middle
of a batch. The replica must finish what it handed to the provider, record it and publish the
`sent` events before it exits, so that the moment it is gone the event log already agrees with
the provider; a fresh replica then sends the rest, and nothing arrives twice.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from tests.integration.sms_gateway.harness import (
    AccountTicks,
    Sim,
    assert_exactly_once,
    gateway_process,
    make_site,
    outcomes_by_reference,
    submit,
    terminal,
    wait_terminal,
)
from tests.support.waiting import wait_until

SENT = "stagger.dispatch.sent"


async def _accepted(sim: Sim, account: Any, n: int) -> bool:
    outcomes = outcomes_by_reference(await sim.submissions(account))
    return sum(c["accepted"] for c in outcomes.values()) >= n


async def test_sigterm_finishes_and_records_in_flight_sends_before_exit(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    account = await sim.account()
    site = await make_site(nc, sim, account, rate=100)
    # Slow provider answers keep sends in flight at any instant the signal may land.
    await sim.faults(seed=3, latency_ms=(100, 300))
    first = gateway_process(nats_url, tmp_path / "var-1", database_url, "first")
    try:
        ids = await submit(nc, site["site"], 600)
        async with AccountTicks(nc, site["account"], [site["site"]], rate=100):
            await wait_until(lambda: _accepted(sim, account, 100), timeout=60, message="100 sent")
            code = first.stop(timeout=30)
            assert code == 0, first.logs()[-3000:]
            # The replica is gone: every message the provider accepted has its `sent` event.
            accepted = {
                ref
                for ref, seen in outcomes_by_reference(await sim.submissions(account)).items()
                if seen["accepted"]
            }
            ends = await terminal(nc)
            recorded = {i for i in ids if any(e.type == SENT for e in ends.get(i, []))}
            assert accepted, "the provider accepted messages before the signal"
            assert recorded == accepted
            assert len(accepted) < len(ids), "the signal landed mid-batch"
            await sim.clear_faults()
            second = gateway_process(nats_url, tmp_path / "var-2", database_url, "second")
            try:
                await wait_terminal(nc, ids, timeout=120)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{second.logs()[-4000:]}") from None
            finally:
                second.stop()
    finally:
        first.stop()
    assert_exactly_once(await sim.submissions(account), ids)
    ends = await terminal(nc)
    assert Counter(len(ends[i]) for i in ids) == Counter({1: len(ids)})
    assert '"draining"' in first.logs()
    assert "drain timed out" not in first.logs()
