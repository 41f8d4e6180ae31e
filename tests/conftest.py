"""Fixtures shared by every test: a real nats-server, databases, clean streams."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from hypothesis import settings
from nats.aio.client import Client

from shared.bus.topology import ensure_streams
from shared.domain.destinations import LOOPBACK_ALLOW
from shared.runtime.nats_server import NatsServer, free_port
from tests.support.postgres import PostgresServer, create_database, drop_database, find_postgres
from tests.support.services import require

pytest_plugins = ["tests.support.watchdog"]

# Property tests check what the domain answers, not how fast: on two shared cores one example
# can take 300 ms for want of CPU, and Hypothesis' per-example deadline would call that a
# failure. Tests that set their own deadline keep it.
settings.register_profile("stagger", deadline=None)
settings.load_profile("stagger")

# The tests' SMTP, IMAP and SMS servers listen on loopback, as under `stagger up`; tests of the
# allow-list itself pass their own (tests/integration/security/test_outbound_destinations.py).
os.environ.setdefault("STAGGER_OUTBOUND_ALLOW", LOOPBACK_ALLOW)


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One real nats-server (from the wheel) with JetStream for the whole session."""
    store = tmp_path_factory.mktemp("nats")
    server = NatsServer(port=free_port(), store_dir=store, log_file=store / "nats.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server: NatsServer) -> str:
    """Client URL of the session's nats-server."""
    return nats_server.url


async def delete_all_streams(nc: Client) -> None:
    """Remove every stream (and with them every consumer)."""
    js = nc.jetstream()
    for info in await js.streams_info():
        await js.delete_stream(info.config.name)


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    """A connection to the session's server with every Stagger stream freshly created."""
    client = await nats.connect(nats_url)
    await delete_all_streams(client)
    await ensure_streams(client.jetstream())
    yield client
    with contextlib.suppress(Exception):
        await client.drain()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | str]:
    """A PostgreSQL server, or the reason there is none."""
    with find_postgres() as found:
        yield found


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer | str
) -> AsyncIterator[str]:
    """A fresh empty database: each test using it runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    if isinstance(postgres_server, str):
        require(False, "PostgreSQL", postgres_server)
        return
    url = await create_database(postgres_server.admin_url)
    try:
        yield url
    finally:
        await drop_database(postgres_server.admin_url, url)
