"""Receipts are recorded in groups (`shared.dispatch.receipt_group`): a gateway SIGKILLed while
receipts wait for their group's commit answered none of them, so the provider delivers them
again to the restarted gateway, and every message ends with one `sent` and one receipt."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from nats.aio.client import Client

from services.sms_provider_sim.adapters.webhooks import MAX_ATTEMPTS
from shared.bus.topology import DISPATCH
from tests.integration.sms_gateway.harness import (
    AccountTicks,
    Sim,
    SimAccount,
    assert_exactly_once,
    events,
    gateway_process,
    make_site,
    submit,
)
from tests.support.processes import ServiceProcess, start_service
from tests.support.waiting import wait_until

RECEIPT_TYPES = {"stagger.dispatch.delivered", "stagger.dispatch.undelivered"}
COUNT = 150
KILL_AFTER = 30
"""Receipts recorded before the SIGKILL (the account sends 100/s, receipts come 0.3 s later:
dozens are on their way or waiting for their group's commit at that moment)."""


async def _receipts(nc: Client) -> Counter[str]:
    """message id → receipt events in DISPATCH."""
    return Counter(
        e.data.message_id  # type: ignore[attr-defined]
        for e in await events(nc, DISPATCH)
        if e.type in RECEIPT_TYPES
    )


async def _receipt_posts(sim: Sim, account: SimAccount) -> list[dict[str, object]]:
    async with sim.client() as http:
        attempts = (await http.get("/v1/admin/webhooks", params={"type": "receipt"})).json()
    return [a for a in attempts if a["account"] == account.name]


@pytest.mark.timeout(480)  # a restart and the provider's retries, on a busy machine
async def test_receipts_in_flight_at_a_sigkill_are_recorded_once_after_the_restart(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    first = gateway_process(nats_url, tmp_path / "var", database_url, "receipts-1")
    replicas: list[ServiceProcess] = [first]
    try:
        account = await sim.account(webhook=f"{first.url}/webhooks/sms/simulator")
        site = await make_site(nc, sim, account, rate=100)
        ids = await submit(nc, site["site"], COUNT)
        async with AccountTicks(nc, site["account"], [site["site"]], rate=100):

            async def some_recorded() -> bool:
                return sum((await _receipts(nc)).values()) >= KILL_AFTER

            await wait_until(some_recorded, timeout=90, message=f"{KILL_AFTER} receipts")
            first.kill()
            assert first.process is not None and first.process.returncode == -9
            # The same port (the account's webhook URL) and database: the provider's retries
            # of the receipts the killed replica never answered reach the new one.
            replicas.append(start_service("sms_gateway", first.env))

            async def provider_done() -> bool:
                # Every receipt answered 2xx, or given up by the provider (a receipt whose send
                # was still being reconciled is answered 503 and retried with back-off).
                posts = await _receipt_posts(sim, account)
                ok = {p["reference"] for p in posts if p["ok"]}
                tries = Counter(p["reference"] for p in posts if not p["ok"])
                return all(i in ok or tries[i] >= MAX_ATTEMPTS for i in ids)

            await wait_until(provider_done, timeout=240, interval=1, message="receipts settled")
    finally:
        for replica in replicas:
            replica.stop()
    posts = await _receipt_posts(sim, account)
    answered = {p["reference"] for p in posts if p["ok"]}
    receipts = {i: n for i, n in (await _receipts(nc)).items() if i in set(ids)}
    # Nothing lost: every receipt the gateway answered 2xx is recorded; nothing twice.
    assert set(receipts) == answered
    assert set(receipts.values()) == {1}
    assert len(answered) > KILL_AFTER
    assert_exactly_once(await sim.submissions(account), ids)
    # The kill did catch receipts on their way: some POSTs failed and were delivered again.
    assert any(not p["ok"] for p in posts)
