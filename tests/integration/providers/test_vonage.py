"""The Vonage adapter against the simulator's Vonage dialect, over HTTP."""

from __future__ import annotations

import time

import httpx

from services.sms_gateway.adapters.providers.vonage import (
    VonageProvider,
    parse_inbound,
    parse_receipt,
    signature,
    verify,
)
from services.sms_provider_sim.dialects.vonage import sign
from tests.integration.providers import contract
from tests.integration.sms_gateway.harness import WEBHOOK_SECRET, Sim, SimAccount
from tests.integration.sms_provider_sim.harness import SimProcess, WebhookReceiver


def build(client: httpx.AsyncClient, account: SimAccount, url: str) -> VonageProvider:
    return VonageProvider(
        client,
        api_key=account.name,
        api_secret=account.api_key,
        base_url=f"{url}/vonage",
        rate_per_second=30,
    )


VONAGE = contract.Dialect("vonage", build, parse_receipt, parse_inbound, "money", 0.0456)


def test_signatures_agree_and_are_checked() -> None:
    params = {"msisdn": "61491570156", "text": "a=b&c", "api-key": "abc"}
    params["timestamp"] = str(int(time.time()))
    assert signature("s3cret", params) == sign("s3cret", params)
    signed = params | {"sig": signature("s3cret", params)}
    assert verify(signed, "s3cret", 300)
    assert not verify(signed, "other", 300)
    assert not verify(signed | {"text": "changed"}, "s3cret", 300)
    stale = params | {"timestamp": str(int(time.time()) - 3600)}
    assert not verify(stale | {"sig": signature("s3cret", stale)}, "s3cret", 300)


async def test_sends_looks_up_and_reports_balance(sim: Sim, sim_process: SimProcess) -> None:
    await contract.sends_looks_up_and_reports_balance(sim, VONAGE, sim_process.url)


async def test_maps_errors(sim: Sim, sim_process: SimProcess) -> None:
    await contract.maps_errors(sim, VONAGE, sim_process.url)


async def test_settles_an_unanswered_send(sim: Sim, sim_process: SimProcess) -> None:
    await contract.settles_an_unanswered_send(sim, VONAGE, sim_process.url)


async def test_never_twice_under_faults(sim: Sim, sim_process: SimProcess) -> None:
    await contract.never_twice_under_faults(sim, VONAGE, sim_process.url)


async def test_receipts_and_replies_are_signed(
    sim: Sim, sim_process: SimProcess, receiver: WebhookReceiver
) -> None:
    await contract.delivers_receipts_and_replies(sim, VONAGE, sim_process.url, receiver)
    last = receiver.deliveries[-1]
    assert verify(contract.fields(last.body, "form"), WEBHOOK_SECRET, 300)
