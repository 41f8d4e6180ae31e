"""Fixtures: one simulator process and one webhook receiver for the session, a fresh account
per test (accounts isolate tests from each other; faults are global, so they are cleared)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.integration.sms_provider_sim.harness import Account, SimProcess, WebhookReceiver

RECEIPT_DELAY = "0.2"


@pytest.fixture(scope="session")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    """The webhook receiver."""
    server = WebhookReceiver()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
async def sim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SimProcess]:
    """The shared simulator process; it must stop cleanly (exit 0) on SIGTERM at the end."""
    process = SimProcess(
        tmp_path_factory.mktemp("sms-sim") / "sim.log",
        STAGGER_SIM_SEED="1234",
        STAGGER_SIM_RECEIPT_DELAY_SECONDS=RECEIPT_DELAY,
    )
    await process.start()
    yield process
    code = process.terminate()
    assert code == 0, f"simulator exit code {code}:\n{process.log()[-4000:]}"


@pytest.fixture
def sim_client_factory(sim: SimProcess) -> Callable[..., httpx.AsyncClient]:
    """Make extra clients for the shared simulator (e.g. with a short timeout)."""
    return sim.client


@pytest.fixture
async def client(sim: SimProcess) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the shared simulator; faults are cleared after the test."""
    async with sim.client() as http:
        yield http
        await http.delete("/v1/admin/faults")


MakeAccount = Callable[..., Awaitable[Account]]


@pytest.fixture
def make_account(client: httpx.AsyncClient, receiver: WebhookReceiver) -> MakeAccount:
    """Create a fresh account (webhooks go to the receiver under /hooks/<name>)."""

    async def make(**settings: Any) -> Account:
        name = f"acct-{secrets.token_hex(4)}"
        account = Account(
            name=name,
            api_key=f"key-{secrets.token_hex(8)}",
            webhook_secret=f"whsec-{secrets.token_hex(8)}",
            hook_path=f"/hooks/{name}",
        )
        body = {
            "api_key": account.api_key,
            "credits": 100,
            "webhook_url": receiver.url(account.hook_path),
            "webhook_secret": account.webhook_secret,
            **settings,
        }
        response = await client.put(f"/v1/admin/accounts/{name}", json=body)
        assert response.status_code == 201, response.text
        return account

    return make


@pytest.fixture
async def account(make_account: MakeAccount) -> Account:
    """A fresh account with 100 credits at 1 credit per segment."""
    return await make_account()
