"""Fixtures of the scheduler's integration tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from shared.bus.topology import ensure_streams
from shared.secrets import SecretBox, generate_key
from tests.conftest import delete_all_streams
from tests.integration.config.conftest import ConfigHarness
from tests.integration.scheduler.support import TickReader
from tests.support.processes import ServiceProcess, service_env, start_service


@pytest.fixture
async def ticks(nc: Client) -> AsyncIterator[TickReader]:
    """A gateway's view of the TICKS stream (fresh streams, every tick taken and kept)."""
    reader = await TickReader(nc).start()
    yield reader
    await reader.close()


@dataclass
class Stack:
    """A config service and a scheduler, as processes, and an operator's NATS connection."""

    config: ConfigHarness
    scheduler: ServiceProcess
    ticks: TickReader


@pytest.fixture
async def stack(nats_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """Fresh streams, the config service (its API) and one scheduler replica."""
    nc = await nats.connect(nats_url)
    await delete_all_streams(nc)
    await ensure_streams(nc.jetstream())
    key = generate_key()
    env = service_env(nats_url, tmp_path / "var", extra={"STAGGER_SECRET_KEY": key})
    config = start_service("config", env)
    scheduler: ServiceProcess | None = None
    reader = await TickReader(nc).start()
    try:
        scheduler = start_service("scheduler", env)
        yield Stack(ConfigHarness(config, nc, env, SecretBox([key.encode()])), scheduler, reader)
    finally:
        await reader.close()
        if scheduler is not None:
            scheduler.stop()
        config.stop()
        with contextlib.suppress(Exception):
            await nc.close()
