"""Per-group producer users: a practice system may submit to its own group's sites only.

The server runs deploy/nats/standalone.conf with copies of deploy/nats/accounts.conf and
passwords.conf, into which `deploy/nats/provision.py producers` wrote the producer users for the
groups and sites found in SETTINGS (as an operator runs it), then reloaded (SIGHUP).
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client

from services.config.adapters.settings_store import SettingsStore
from services.config.handlers import ConfigHandlers
from shared.bus import subjects
from shared.bus.topology import SETTINGS
from shared.eventstore import EventStore
from shared.runtime.nats_server import NatsServer, free_port
from shared.secrets import SecretBox, generate_key
from tests.integration.deploy.nats_configs import (
    DEPLOY_NATS,
    PROVISION,
    Connection,
    connected,
    dev_password,
    provision,
    render,
)
from tests.integration.deploy.test_permissions import (
    assert_acknowledged,
    assert_not_acknowledged,
    assert_refused,
    stored,
)
from tests.support.waiting import wait_until

GROUPS = {"g-north": ["north-a", "north-b"], "g-south": ["south-a"]}


@dataclass
class Deployed:
    server: NatsServer
    accounts: Path
    credentials: Path

    @property
    def url(self) -> str:
        return self.server.url

    def creds(self, group: str) -> dict[str, str]:
        lines = (self.credentials / f"producer-{group}.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))

    def reload(self) -> None:
        assert self.server.process is not None
        self.server.process.send_signal(signal.SIGHUP)


def write_producers(url: str, accounts: Path, credentials: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGGER_")}
    env.update(
        {
            "STAGGER_NATS_URL": url,
            "STAGGER_NATS_USER": "admin",
            "STAGGER_NATS_PASSWORD": dev_password("admin"),
            "STAGGER_STARTUP_TIMEOUT_SECONDS": "30",
        }
    )
    result = subprocess.run(
        [
            sys.executable,
            str(PROVISION),
            "producers",
            "--accounts",
            str(accounts),
            "--credentials",
            str(credentials),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def add_site(url: str, group: str, site: str) -> None:
    nc = await nats.connect(url, user="admin", password=dev_password("admin"))
    try:
        handlers = ConfigHandlers(
            nc, SettingsStore(EventStore(nc, SETTINGS)), SecretBox([generate_key().encode()]), None
        )
        if await handlers.store.group(group) is None:
            await handlers.create_group(group, group, {}, actor="test:operator")
        await handlers.create_site(group, site, {"name": site}, {}, actor="test:operator")
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    tmp = tmp_path_factory.mktemp("producers")
    source = tmp / "deploy"
    source.mkdir()
    for name in ("standalone.conf", "accounts.conf", "passwords.conf"):
        shutil.copy(DEPLOY_NATS / name, source / name)
    run = tmp / "run"
    run.mkdir()
    port = free_port()
    conf = render(
        source / "standalone.conf",
        run,
        client_port=port,
        http_port=free_port(),
        store_dir=run / "store",
    )
    server = NatsServer(
        port=port, store_dir=run / "store", config_file=conf, log_file=run / "nats.log"
    )
    server.start()
    try:
        result = provision(server.url)
        assert result.returncode == 0, result.stdout + result.stderr
        yield Deployed(server, source / "accounts.conf", tmp / "credentials")
    finally:
        server.stop()


def connect_producer(
    deployed: Deployed, group: str, *, inbox_prefix: str | None = None
) -> AbstractAsyncContextManager[Connection]:
    """Connect as the group's producer with its generated credentials ("" as `inbox_prefix`:
    nats-py's default inboxes)."""
    creds = deployed.creds(group)
    options: dict[str, object] = {}
    if inbox_prefix != "":
        options["inbox_prefix"] = inbox_prefix or creds["NATS_INBOX_PREFIX"]
    return connected(
        deployed.url, creds["STAGGER_NATS_USER"], creds["STAGGER_NATS_PASSWORD"], **options
    )


@pytest.fixture(scope="module")
async def provisioned(deployed: Deployed) -> Deployed:
    for group, sites in GROUPS.items():
        for site in sites:
            await add_site(deployed.url, group, site)
    write_producers(deployed.url, deployed.accounts, deployed.credentials)
    deployed.reload()

    async def can_connect() -> bool:
        try:
            async with connect_producer(deployed, "g-north"):
                return True
        except (nats.errors.Error, OSError):  # refused until the reload is done
            return False

    await wait_until(can_connect, timeout=20, message="the reloaded server knowing producers")
    return deployed


@pytest.fixture
async def admin(deployed: Deployed) -> AsyncIterator[Client]:
    nc = await nats.connect(deployed.url, user="admin", password=dev_password("admin"))
    yield nc
    await nc.close()


async def test_a_groups_producer_submits_to_its_own_sites_only(
    provisioned: Deployed, admin: Client
) -> None:
    async with connect_producer(provisioned, "g-north") as north:
        for site in GROUPS["g-north"]:
            await assert_acknowledged(north, subjects.outbox("sms", site), "OUTBOX")
            await assert_acknowledged(north, subjects.outbox("email", site), "OUTBOX")
        await assert_not_acknowledged(north, subjects.outbox("sms", "south-a"))
        await assert_not_acknowledged(north, subjects.outbox("email", "south-a"))
        await assert_refused(
            north,
            subjects.outbox("sms", "no-such-site"),
            subjects.dispatch("sms", "north-a"),
            subjects.settings_site("g-north", "north-a"),
            "$JS.API.STREAM.PURGE.OUTBOX",
        )
    async with connect_producer(provisioned, "g-south") as south:
        await assert_acknowledged(south, subjects.outbox("sms", "south-a"), "OUTBOX")
        await assert_not_acknowledged(south, subjects.outbox("sms", "north-a"))
    assert await stored(admin, "OUTBOX", subjects.outbox("sms", "south-a")) == 1
    assert await stored(admin, "OUTBOX", subjects.outbox("email", "south-a")) == 0
    assert await stored(admin, "OUTBOX", subjects.outbox("sms", "north-a")) == 1


async def test_a_producer_reads_replies_on_its_own_inbox_prefix_only(
    provisioned: Deployed,
) -> None:
    # Another group's prefix: its acknowledgements are not ours to read.
    async with connect_producer(
        provisioned, "g-north", inbox_prefix="_INBOX_producer-g-south"
    ) as north:
        with pytest.raises(nats.errors.TimeoutError):
            await north.nc.jetstream().publish(subjects.outbox("sms", "north-a"), b"{}", timeout=1)
        assert any('subscription to "_inbox_producer-g-south.' in r for r in north.refusals())
        for pattern in ("outbox.>", "_INBOX.>", "_INBOX_producer-g-south.>"):
            await north.nc.subscribe(pattern)
        await north.nc.flush()
        for pattern in ("outbox.>", "_INBOX.>", "_INBOX_producer-g-south.>"):
            await wait_until(
                north.refused("subscription", pattern),
                timeout=10,
                message=f"subscription to {pattern} refused",
            )


async def test_credentials_are_private_and_survive_a_new_site(provisioned: Deployed) -> None:
    before = provisioned.creds("g-north")
    for path in provisioned.credentials.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(provisioned.accounts.stat().st_mode) == 0o600
    await add_site(provisioned.url, "g-north", "north-c")
    write_producers(provisioned.url, provisioned.accounts, provisioned.credentials)
    provisioned.reload()
    assert provisioned.creds("g-north") == before, "the password stays the same"

    async def new_site_allowed() -> bool:
        try:
            async with connect_producer(provisioned, "g-north") as north:
                await north.nc.jetstream().publish(
                    subjects.outbox("sms", "north-c"),
                    b"{}",
                    headers={"Nats-Msg-Id": "north-c-1"},
                    timeout=1,
                )
                return True
        except (nats.errors.Error, OSError):  # refused until the reload is done
            return False

    await wait_until(new_site_allowed, timeout=20, message="north-c allowed after the reload")
