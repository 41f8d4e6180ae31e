"""The TNZ adapter (New Zealand short codes) against the simulator's TNZ dialect, over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from services.sms_gateway.adapters.providers.base import Outbound
from services.sms_gateway.adapters.providers.tnz import TnzProvider, parse_inbound, parse_receipt
from tests.integration.providers import contract
from tests.integration.sms_gateway.harness import Sim, SimAccount
from tests.integration.sms_provider_sim.harness import SimProcess, WebhookReceiver

SHORT_CODE = "2210"


def build(client: httpx.AsyncClient, account: SimAccount, url: str) -> TnzProvider:
    return TnzProvider(
        client, auth_token=account.api_key, base_url=f"{url}/tnz", rate_per_second=10
    )


TNZ = contract.Dialect("tnz", build, parse_receipt, parse_inbound, "money", 0.09, sender=SHORT_CODE)


async def test_sends_from_short_codes_only(sim: Sim, sim_process: SimProcess) -> None:
    account = await contract.account(sim, TNZ)
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        adapter = build(client, account, sim_process.url)
        mobile = await adapter.send(
            Outbound("m-nz-1", "+64211234567", "+64211111111", "Hi", datetime.now(UTC))
        )
    assert mobile.status == "refused" and "short code" in mobile.detail
    assert await sim.stored(account) == [], "refused before any request"


async def test_sends_and_looks_up(sim: Sim, sim_process: SimProcess) -> None:
    account = await contract.account(sim, TNZ)
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        adapter = build(client, account, sim_process.url)
        message = contract.outbound(sender=SHORT_CODE)
        reply = await adapter.send(message)
        found = await adapter.lookup(message)
        balance = await adapter.balance()
    assert reply.status == "accepted" and reply.provider_message_id == message.reference
    assert found.sent is True
    # Post-paid: a nominal balance once the token is proved.
    assert (balance.unit, balance.currency) == ("money", "NZD")


async def test_maps_errors(sim: Sim, sim_process: SimProcess) -> None:
    await contract.maps_errors(sim, TNZ, sim_process.url)


async def test_settles_an_unanswered_send(sim: Sim, sim_process: SimProcess) -> None:
    await contract.settles_an_unanswered_send(sim, TNZ, sim_process.url)


async def test_never_twice_under_faults(sim: Sim, sim_process: SimProcess) -> None:
    await contract.never_twice_under_faults(sim, TNZ, sim_process.url)


async def test_receipts_and_replies(
    sim: Sim, sim_process: SimProcess, receiver: WebhookReceiver
) -> None:
    await contract.delivers_receipts_and_replies(sim, TNZ, sim_process.url, receiver)
