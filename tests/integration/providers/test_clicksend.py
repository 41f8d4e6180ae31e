"""The ClickSend adapter against the simulator's ClickSend dialect, over HTTP."""

from __future__ import annotations

import httpx

from services.sms_gateway.adapters.providers.clicksend import (
    ClickSendProvider,
    parse_inbound,
    parse_receipt,
)
from tests.integration.providers import contract
from tests.integration.sms_gateway.harness import Sim, SimAccount
from tests.integration.sms_provider_sim.harness import SimProcess, WebhookReceiver


def build(client: httpx.AsyncClient, account: SimAccount, url: str) -> ClickSendProvider:
    return ClickSendProvider(
        client,
        username=account.name,
        api_key=account.api_key,
        base_url=f"{url}/clicksend",
        rate_per_second=100,
    )


CLICKSEND = contract.Dialect("clicksend", build, parse_receipt, parse_inbound, "money", 0.077)


async def test_sends_looks_up_and_reports_balance(sim: Sim, sim_process: SimProcess) -> None:
    await contract.sends_looks_up_and_reports_balance(sim, CLICKSEND, sim_process.url)


async def test_maps_errors(sim: Sim, sim_process: SimProcess) -> None:
    await contract.maps_errors(sim, CLICKSEND, sim_process.url)


async def test_settles_an_unanswered_send(sim: Sim, sim_process: SimProcess) -> None:
    await contract.settles_an_unanswered_send(sim, CLICKSEND, sim_process.url)


async def test_never_twice_under_faults(sim: Sim, sim_process: SimProcess) -> None:
    await contract.never_twice_under_faults(sim, CLICKSEND, sim_process.url)


async def test_receipts_and_replies(
    sim: Sim, sim_process: SimProcess, receiver: WebhookReceiver
) -> None:
    await contract.delivers_receipts_and_replies(sim, CLICKSEND, sim_process.url, receiver)
