"""Never twice, never lost: provider faults, crashes and replicas, counted at the simulator,
for the simulator's own API and for every provider dialect (`DIALECTS`) over HTTP."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client

from shared.domain.throttle import max_in_any_window
from tests.integration.sms_gateway.dialect_scenarios import (
    DIALECTS,
    assert_stored_once,
    sending_site,
)
from tests.integration.sms_gateway.harness import (
    AccountTicks,
    Sim,
    SimAccount,
    assert_exactly_once,
    gateway_process,
    gateway_running,
    make_site,
    submit,
    terminal,
    wait_terminal,
)
from tests.support.waiting import wait_until

# The simulator's own API runs on SQLite and PostgreSQL with the full batches; each provider
# dialect runs with small batches on SQLite only, which keeps the 12 extra runs to a few minutes
# on CI's two cores (the gateway code under test is the same whatever the dialect, and the
# database half is covered by the simulator's runs). Vonage and MessageMedia settle a send
# whose replica was killed before it reached them only after their reports' 2-minute lag (the
# adapters' REPORT_LAG), so their SIGKILL runs can take up to about 2.5 minutes each.
FULL = [("simulator", "sqlite"), ("simulator", "postgres")]
PER_DIALECT = [(kind, "sqlite") for kind in DIALECTS]
FAULTED = {"simulator": 200}
"""Messages per faults run (40 for a dialect)."""
KILLED = {"simulator": (2000, 400)}
"""(messages, accepted before the SIGKILL) per crash run ((200, 60) for a dialect)."""


@pytest.mark.parametrize(("kind", "database_url"), FULL + PER_DIALECT, indirect=["database_url"])
async def test_faults_at_twenty_percent_lose_nothing_and_duplicate_nothing(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim, kind: str
) -> None:
    """20 % of sends fail (429 with Retry-After, 503, accepted then never answered): each
    message is still stored once at the simulator and ends in exactly one `sent`."""
    count = FAULTED.get(kind, 40)
    account, site = await sending_site(nc, sim, kind, rate=50)
    # A seeded sequence (the simulator draws the same numbers for every send whatever its
    # dialect), so each fault kind occurs in the first 40 sends.
    await sim.faults(
        seed=7,
        rate_429=0.07,
        retry_after_seconds=1,
        rate_5xx=0.07,
        rate_timeout_after_accept=0.06,
        timeout_hold_seconds=3,
    )
    async with gateway_running(
        nats_url, database_url, tmp_path, http_timeout_seconds=1.0, max_attempts=12
    ):
        ids = await submit(nc, site["site"], count)
        async with AccountTicks(nc, site["account"], [site["site"]], rate=50):
            await wait_terminal(nc, ids, timeout=120)
    await assert_stored_once(sim, account, kind, ids)
    seen = Counter(s["outcome"] for s in await sim.submissions(account))
    # The faults really happened, and the gateway came back for every one of them.
    assert seen["rejected_429"] > 0 and seen["rejected_5xx"] > 0, seen
    assert seen["accepted_then_timeout"] > 0, seen
    ends = await terminal(nc)
    assert {i: len(ends[i]) for i in ids} == dict.fromkeys(ids, 1)
    assert {ends[i][0].type for i in ids} == {"stagger.dispatch.sent"}
    settled = [ends[i][0] for i in ids if ends[i][0].data.attempts > 1]
    assert settled, "some messages needed more than one attempt"


@pytest.mark.parametrize(("kind", "database_url"), FULL + PER_DIALECT, indirect=["database_url"])
async def test_sigkill_of_a_replica_mid_batch_loses_and_repeats_nothing(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim, kind: str
) -> None:
    """Two replicas share a batch; one is SIGKILLed mid-batch. Counted at the simulator,
    every message is stored once and has exactly one terminal event."""
    count, before_kill = KILLED.get(kind, (200, 60))
    account, site = await sending_site(nc, sim, kind, rate=100)
    replicas = [
        gateway_process(nats_url, tmp_path / f"var-{n}", database_url, f"replica-{n}")
        for n in (1, 2)
    ]
    try:
        ids = await submit(nc, site["site"], count)
        async with AccountTicks(nc, site["account"], [site["site"]], rate=100):
            await wait_until(
                lambda: _stored(sim, account, before_kill),
                timeout=60,
                message=f"{before_kill} sent",
            )
            replicas[0].kill()
            assert replicas[0].process is not None and replicas[0].process.returncode == -9
            # The account's hard rate (100/s) leaves most of the batch for after the kill.
            assert len(await sim.stored(account)) < count, "killed mid-batch"
            await wait_terminal(nc, ids, timeout=180)
    finally:
        for replica in replicas:
            replica.stop()
    await assert_stored_once(sim, account, kind, ids)
    ends = await terminal(nc)
    assert Counter(len(ends[i]) for i in ids) == Counter({1: count})
    assert {ends[i][0].type for i in ids} == {"stagger.dispatch.sent"}


async def test_three_replicas_keep_one_account_under_its_rate(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    # A real SMS account's pace (Twilio long codes: 1/s). A stall of up to one interval at the
    # simulator (which stamps arrivals) or a replica fits in the "+ 1" of the bound.
    rate = 5
    account = await sim.account()
    site = await make_site(nc, sim, account, rate=rate)
    # One tick at a time per replica, so that the three share the ticks and send together.
    replicas = [
        gateway_process(
            nats_url, tmp_path / f"var-{n}", database_url, f"replica-{n}", tick_workers="1"
        )
        for n in (1, 2, 3)
    ]
    try:
        ids = await submit(nc, site["site"], 100)
        # Ticks at twice the account's rate: only the gateway's own hard limit holds it.
        async with AccountTicks(nc, site["account"], [site["site"]], rate=2 * rate):
            await wait_terminal(nc, ids, timeout=120)
        sends = [_sends(replica.url) for replica in replicas]
    finally:
        for replica in replicas:
            replica.stop()
    submissions = await sim.submissions(account)
    assert_exactly_once(submissions, ids)
    arrivals = [datetime.fromisoformat(s["received_at"]) for s in submissions]
    assert max_in_any_window(arrivals, timedelta(seconds=1)) <= rate + 1
    assert sum(sends) == 100
    assert all(n > 0 for n in sends), f"every replica sent some: {sends}"


def _sends(url: str) -> float:
    """Messages one replica handed to a provider (its Prometheus counter)."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    found = re.search(r'^stagger_sends_total\{channel="sms"\} ([0-9.e+]+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def _stored(sim: Sim, account: SimAccount, n: int) -> bool:
    """True once the simulator stored `n` of the account's messages (whatever the dialect)."""
    return len(await sim.stored(account)) >= n
