"""A config service process against the session's NATS, with helpers to drive its API."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client

from services.config.adapters.settings_store import SettingsStore
from services.config.handlers import ConfigHandlers
from shared.bus.topology import SETTINGS, ensure_streams
from shared.eventstore import EventStore
from shared.secrets import SecretBox, generate_key
from shared.tokens import issue_token
from tests.conftest import delete_all_streams
from tests.support.processes import ServiceProcess, service_env, start_service


@dataclass
class ConfigHarness:
    """The running config service and an operator's view of NATS."""

    service: ServiceProcess
    nc: Client
    env: dict[str, str]
    box: SecretBox

    @property
    def url(self) -> str:
        return self.service.url

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)

    async def create_group(self, name: str = "Smile Group", **defaults: Any) -> str:
        group_id = f"g-{uuid.uuid4().hex[:8]}"
        handlers = ConfigHandlers(
            self.nc,
            SettingsStore(EventStore(self.nc, SETTINGS)),
            self.box,
            None,
            simulator_enabled=True,
        )
        await handlers.create_group(group_id, name, defaults, actor="test:operator")
        return group_id

    async def token(self, group_id: str, role: str, sites: list[str] | None = None) -> str:
        _, token = await issue_token(
            self.nc,
            group_id=group_id,
            role=role,  # type: ignore[arg-type]
            sites=sites or [],
            label="test",
        )
        return token

    async def create_site(
        self,
        admin_token: str,
        group_id: str,
        *,
        name: str = "High Street",
        timezone: str = "Europe/London",
        region: str = "UK",
        settings: dict | None = None,
    ) -> dict[str, Any]:
        site_id = f"s-{uuid.uuid4().hex[:8]}"
        async with self.client(admin_token) as client:
            response = await client.post(
                f"/api/v1/groups/{group_id}/sites",
                json={
                    "site_id": site_id,
                    "name": name,
                    "timezone": timezone,
                    "region": region,
                    "settings": settings or {},
                },
            )
        assert response.status_code == 201, response.text
        return response.json()

    async def stream_count(self, subject: str | None = None) -> int:
        info = await self.nc.jetstream().stream_info(SETTINGS, subjects_filter=subject)
        if subject is None:
            return info.state.messages
        return sum((info.state.subjects or {}).values())


@contextlib.asynccontextmanager
async def config_running(
    nats_url: str, var_dir: Path, **extra: str
) -> AsyncIterator[ConfigHarness]:
    """The config service as a real process on fresh streams, with a new secret key and
    these extra settings."""
    nc = await nats.connect(nats_url)
    await delete_all_streams(nc)
    await ensure_streams(nc.jetstream())
    key = generate_key()
    env = service_env(nats_url, var_dir, extra={"STAGGER_SECRET_KEY": key, **extra})
    service = start_service("config", env)
    try:
        yield ConfigHarness(service, nc, env, SecretBox([key.encode()]))
    finally:
        service.stop()
        with contextlib.suppress(Exception):
            await nc.close()


@pytest.fixture(scope="module")
async def config(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ConfigHarness]:
    async with config_running(nats_url, tmp_path_factory.mktemp("config-var")) as harness:
        yield harness


@pytest.fixture
async def group(config: ConfigHarness) -> dict[str, str]:
    """A fresh group with an admin token and one site."""
    group_id = await config.create_group()
    admin = await config.token(group_id, "group_admin")
    site = await config.create_site(admin, group_id)
    return {"group_id": group_id, "admin": admin, "site_id": site["site_id"]}
