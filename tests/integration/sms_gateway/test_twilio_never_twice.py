"""Twilio, which has no simulator dialect, against its local double over HTTP: the same
never-twice scenarios as `test_never_twice.py` (20 % faults, a SIGKILLed replica mid-batch)
and credits run out → held → topped up → resumed, counted at the double.

Twilio's create is not idempotent and carries no reference of ours, so every message goes to
a number of its own and is counted by recipient. SQLite only: the database half of these
scenarios is covered by the simulator's runs on PostgreSQL, and CI's budget is small.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from nats.aio.client import Client

from services.sms_gateway.adapters.providers.catalogue import TOPUP_PAGES
from shared.events.envelope import Envelope
from tests.integration.sms_gateway.dialect_scenarios import ours
from tests.integration.sms_gateway.harness import (
    AccountTicks,
    gateway_process,
    gateway_running,
    number,
    submit,
    terminal,
    wait_terminal,
)
from tests.integration.sms_gateway.test_twilio import twilio_site
from tests.support.twilio_double import (
    TwilioDouble,
    twilio_fixture,  # noqa: F401  (the `twilio` fixture)
)
from tests.support.waiting import wait_until

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def stored_once(twilio: TwilioDouble, count: int) -> None:
    """Each of the `count` messages stored exactly once at the double (counted by recipient)."""
    stored = Counter(m["to"] for m in twilio.messages)
    assert stored == Counter(number(i) for i in range(count)), "each stored exactly once"


@SQLITE
async def test_faults_at_twenty_percent_lose_nothing_and_duplicate_nothing(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, twilio: TwilioDouble
) -> None:
    """429 with Retry-After, 503 and stored-then-dropped at 20 %: one `sent` each."""
    site = await twilio_site(nc, twilio, twilio.account(), mode="immediate")
    twilio.faults(seed=7, rate_429=0.07, rate_5xx=0.07, rate_drop=0.06)
    async with gateway_running(
        nats_url, database_url, tmp_path, http_timeout_seconds=1.0, max_attempts=12
    ):
        ids = await submit(nc, site["site"], 40)
        async with AccountTicks(nc, site["account"], [site["site"]], rate=20):
            await wait_terminal(nc, ids, timeout=120)
    stored_once(twilio, 40)
    seen = Counter(p.status for p in twilio.posts)
    # The faults really happened (None: stored, then the connection dropped).
    assert seen[429] > 0 and seen[503] > 0 and seen[None] > 0, seen
    ends = await terminal(nc)
    assert {i: len(ends[i]) for i in ids} == dict.fromkeys(ids, 1)
    assert {ends[i][0].type for i in ids} == {"stagger.dispatch.sent"}
    assert [i for i in ids if ends[i][0].data.attempts > 1], "some needed another attempt"


@SQLITE
async def test_sigkill_of_a_replica_mid_batch_loses_and_repeats_nothing(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, twilio: TwilioDouble
) -> None:
    """Two replicas share 200 messages; one is SIGKILLed after 60 reached Twilio."""
    site = await twilio_site(nc, twilio, twilio.account(), mode="immediate")
    replicas = [
        gateway_process(nats_url, tmp_path / f"var-{n}", database_url, f"replica-{n}")
        for n in (1, 2)
    ]
    try:
        ids = await submit(nc, site["site"], 200)
        async with AccountTicks(nc, site["account"], [site["site"]], rate=20):
            await wait_until(lambda: len(twilio.messages) >= 60, timeout=60, message="60 sent")
            replicas[0].kill()
            assert replicas[0].process is not None and replicas[0].process.returncode == -9
            assert len(twilio.messages) < 200, "killed mid-batch (20/s leaves most for after)"
            await wait_terminal(nc, ids, timeout=180)
    finally:
        for replica in replicas:
            replica.stop()
    stored_once(twilio, 200)
    ends = await terminal(nc)
    assert Counter(len(ends[i]) for i in ids) == Counter({1: 200})
    assert {ends[i][0].type for i in ids} == {"stagger.dispatch.sent"}


async def _ended_when(nc: Client, count: int) -> dict[str, list[Envelope]] | None:
    """The terminal events once `count` messages have one; fails if more have ended."""
    ends = await terminal(nc)
    assert len(ends) <= count, f"{len(ends)} ended while only {count} could be sent"
    return ends if len(ends) == count else None


@SQLITE
async def test_credits_run_out_then_a_top_up_resumes_sending(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, twilio: TwilioDouble
) -> None:
    """Twilio suspends the account at zero (20005): held, `topup_needed` with Twilio's billing
    page (Twilio has no top-up call), and resumed by itself once the balance is back."""
    account = twilio.account(balance="0.10")  # 12 single-part messages at 0.0079
    site = await twilio_site(nc, twilio, account, mode="immediate")
    async with gateway_running(nats_url, database_url, tmp_path):
        ids = await submit(nc, site["site"], 20)
        async with AccountTicks(nc, site["account"], [site["site"]], rate=20):
            await wait_until(
                lambda: ours(nc, "stagger.credits.sending_held", site["account"]),
                timeout=60,
                message="a held event about the account",
            )
            assert len(twilio.messages) == 12
            # The 12 accepted sends are recorded in groups, so their `sent` events may land
            # just after the hold; the 8 held ones must not end at all.
            ended = await wait_until(
                lambda: _ended_when(nc, 12), timeout=30, message="the 12 accepted sends recorded"
            )
            assert {e[0].type for e in ended.values()} == {"stagger.dispatch.sent"}
            assert len(twilio.messages) == 12, "nothing reached Twilio while held"
            account.balance += 5  # topped up in Twilio's console
            await wait_terminal(nc, ids, timeout=90)
    stored_once(twilio, 20)
    ends = await terminal(nc)
    assert {ends[i][0].type for i in ids} == {"stagger.dispatch.sent"}
    assert await ours(nc, "stagger.credits.sending_resumed", site["account"])
    (needed, *_) = await ours(nc, "stagger.credits.topup_needed", site["account"])
    assert needed.data.topup_url == TOPUP_PAGES["twilio"]
