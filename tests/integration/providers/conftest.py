"""Fixtures: one simulator process (every provider dialect) and one webhook receiver for the
session; faults are cleared after each test (they are global to the simulator)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.sms_gateway.harness import Sim
from tests.integration.sms_provider_sim.harness import (
    SimProcess,
    WebhookReceiver,
    simulator_running,
)


@pytest.fixture(scope="session")
async def sim_process(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SimProcess]:
    """The simulator, as a real process on a free port."""
    async with simulator_running(
        tmp_path_factory.mktemp("provider-dialects"),
        STAGGER_SIM_SEED="2020",
        STAGGER_SIM_RECEIPT_DELAY_SECONDS="0.2",
    ) as process:
        yield process


@pytest.fixture
async def sim(sim_process: SimProcess) -> AsyncIterator[Sim]:
    """The simulator's admin API; faults are cleared after the test."""
    helper = Sim(sim_process.url)
    yield helper
    await helper.clear_faults()


@pytest.fixture(scope="session")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    """A real HTTP server recording the dialects' webhooks."""
    server = WebhookReceiver()
    await server.start()
    yield server
    await server.stop()
