"""The Esendex adapter against the simulator's Esendex dialect, over HTTP (XML)."""

from __future__ import annotations

import httpx
import pytest

from services.sms_gateway.adapters.providers.base import BadWebhook
from services.sms_gateway.adapters.providers.esendex import (
    EsendexProvider,
    flat,
    parse_inbound,
    parse_receipt,
)
from tests.integration.providers import contract
from tests.integration.sms_gateway.harness import Sim, SimAccount
from tests.integration.sms_provider_sim.harness import SimProcess, WebhookReceiver


def build(client: httpx.AsyncClient, account: SimAccount, url: str) -> EsendexProvider:
    return EsendexProvider(
        client,
        account_reference=account.name,
        login_and_token=f"{account.name}:{account.api_key}",
        base_url=f"{url}/esendex",
        rate_per_second=10,
    )


ESENDEX = contract.Dialect(
    "esendex", build, parse_receipt, parse_inbound, "credits", 1, references=False
)


def test_push_notifications_with_a_dtd_are_refused() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><InboundMessage/>'
    with pytest.raises(BadWebhook):
        flat(bomb)
    assert flat(b"<MessageDelivered><MessageId>m1</MessageId></MessageDelivered>") == {
        "MessageId": "m1",
        "_type": "MessageDelivered",
    }


async def test_sends_looks_up_and_reports_balance(sim: Sim, sim_process: SimProcess) -> None:
    await contract.sends_looks_up_and_reports_balance(sim, ESENDEX, sim_process.url)


async def test_maps_errors(sim: Sim, sim_process: SimProcess) -> None:
    await contract.maps_errors(sim, ESENDEX, sim_process.url)


async def test_settles_an_unanswered_send(sim: Sim, sim_process: SimProcess) -> None:
    await contract.settles_an_unanswered_send(sim, ESENDEX, sim_process.url)


async def test_never_twice_under_faults(sim: Sim, sim_process: SimProcess) -> None:
    await contract.never_twice_under_faults(sim, ESENDEX, sim_process.url)


async def test_receipts_and_replies(
    sim: Sim, sim_process: SimProcess, receiver: WebhookReceiver
) -> None:
    await contract.delivers_receipts_and_replies(sim, ESENDEX, sim_process.url, receiver)
