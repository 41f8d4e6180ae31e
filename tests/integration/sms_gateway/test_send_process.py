"""The send process: provider sends made by a child process, against the real simulator.

What it must keep true: the answer is the adapter's, a child that dies leaves its unanswered
sends `ambiguous` (looked up, never re-sent blindly) and the next send starts a new child, and
the child never outlives the gateway.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.sms_gateway.adapters.providers import ProviderSpec
from services.sms_gateway.adapters.providers.base import Outbound
from services.sms_gateway.adapters.send_process import ClientOptions, SendProcess
from shared.domain.destinations import LOOPBACK_ALLOW
from tests.integration.sms_gateway.harness import Sim, SimAccount, number
from tests.support.stack import pid_alive
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]
# The simulator listens on loopback, which the outbound allow-list must admit.
OPTIONS = ClientOptions(
    timeout=10, max_connections=8, keepalive_expiry=2, outbound_allow=LOOPBACK_ALLOW
)


def spec(sim: Sim, account: SimAccount) -> ProviderSpec:
    return ProviderSpec(
        kind="simulator",
        account_id=account.name,
        secret=account.api_key,
        base_url=sim.url,
        rate_per_second=1000,
        status_callback=None,
    )


def outbound(reference: str, i: int = 1) -> Outbound:
    return Outbound(reference, number(i), "Stagger", "Your check-up is due.", datetime.now(UTC))


@pytest.fixture
async def sends() -> AsyncIterator[SendProcess]:
    process = SendProcess(OPTIONS)
    await process.start()
    yield process
    await process.close()


async def test_sends_are_made_by_the_child_and_answered_with_the_adapters_reply(
    sim: Sim, sends: SendProcess
) -> None:
    account = await sim.account(credits=10)
    assert sends.pid is not None and sends.pid != os.getpid()
    replies = await asyncio.gather(
        *(sends.send(spec(sim, account), outbound(f"ref-{i}", i)) for i in range(5))
    )
    assert [r.status for r in replies] == ["accepted"] * 5
    assert all(r.provider_message_id and r.segments == 1 for r in replies)
    assert replies[-1].balance is not None and replies[-1].balance < 10
    stored = {m["reference"] for m in await sim.stored(account)}
    assert stored == {f"ref-{i}" for i in range(5)}
    # A refusal comes back as the adapter classified it, with the provider's reason.
    wrong = SimAccount(account.name, "not-the-key")
    refused = await sends.send(spec(sim, wrong), outbound("ref-x"))
    assert refused.status == "bad_credentials"


async def test_a_child_killed_mid_send_leaves_it_ambiguous_and_the_next_send_starts_another(
    sim: Sim, sends: SendProcess
) -> None:
    account = await sim.account()
    await sim.faults(latency_ms=[3000, 3000])  # the send is still waiting for its answer
    pending = asyncio.create_task(sends.send(spec(sim, account), outbound("ref-killed")))

    async def arrived() -> bool:
        return any(s["reference"] == "ref-killed" for s in await sim.submissions(account))

    await wait_until(arrived, timeout=10, message="the send reached the simulator")
    first = sends.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    reply = await asyncio.wait_for(pending, 5)
    assert reply.status == "ambiguous", reply
    assert "exited" in reply.detail

    await sim.clear_faults()
    after = await sends.send(spec(sim, account), outbound("ref-after", 2))
    assert after.status == "accepted"
    assert sends.pid not in (None, first)
    assert sends.started_count == 2


async def test_close_stops_the_child_and_later_sends_are_refused_unsent(
    sim: Sim, sends: SendProcess
) -> None:
    child = sends.pid
    assert child is not None
    await sends.close()
    assert not pid_alive(child)
    account = await sim.account()
    reply = await sends.send(spec(sim, account), outbound("ref-late"))
    assert reply.status == "not_sent"
    assert await sim.submissions(account) == []


async def test_the_child_does_not_outlive_a_killed_gateway(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import asyncio
                from services.sms_gateway.adapters.send_process import ClientOptions, SendProcess

                async def main():
                    sends = SendProcess(ClientOptions(10, 8, 2))
                    await sends.start()
                    print(sends.pid, flush=True)
                    await asyncio.Event().wait()

                asyncio.run(main())
                """
            ),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        assert parent.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(parent.stdout.readline), 30)
        child = int(line)
        assert pid_alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)

        async def gone() -> bool:
            return not pid_alive(child)

        await wait_until(gone, timeout=10, message="the send process stopped with the gateway")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
