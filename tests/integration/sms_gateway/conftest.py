"""Fixtures: one SMS provider simulator process for the session (faults cleared after each
test: they are global), and a fresh simulator account per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.sms_gateway.harness import Sim
from tests.integration.sms_provider_sim.harness import SimProcess, simulator_running


@pytest.fixture(scope="session")
async def sim_process(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SimProcess]:
    """The simulator, as a real process on a free port."""
    async with simulator_running(
        tmp_path_factory.mktemp("sms-gateway-sim"),
        STAGGER_SIM_SEED="4321",
        STAGGER_SIM_RECEIPT_DELAY_SECONDS="0.3",
    ) as process:
        yield process


@pytest.fixture
async def sim(sim_process: SimProcess) -> AsyncIterator[Sim]:
    """The simulator's API; faults are cleared after the test."""
    helper = Sim(sim_process.url)
    yield helper
    await helper.clear_faults()
