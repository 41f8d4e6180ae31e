"""A config service and an audit service on the session's NATS, with the SMTP sink as the
staff mail relay: staff accounts end to end over HTTP."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from tests.integration.config.conftest import ConfigHarness, config_running
from tests.support.processes import ServiceProcess, start_service
from tests.support.smtp import SinkProcess, start_sink_process
from tests.support.staff import CSRF, StaffLogin, seed_staff, sign_in
from tests.support.waiting import wait_until

LINK = re.compile(r"(http://\S+/console/invitation/[A-Za-z0-9_-]+)")
TOTP_KEY = re.compile(r'id="totp-key">([A-Z2-7]+)<')


@dataclass
class StaffStack:
    """The running services and helpers to drive them as staff."""

    config: ConfigHarness
    audit: ServiceProcess
    sink: SinkProcess

    @property
    def url(self) -> str:
        return self.config.url

    async def group(self, **defaults: Any) -> dict[str, Any]:
        """A new group with two sites, an admin token and a signed-in-able admin user."""
        group_id = await self.config.create_group(**defaults)
        token = await self.config.token(group_id, "group_admin")
        first = await self.config.create_site(token, group_id, name="High Street")
        second = await self.config.create_site(token, group_id, name="Riverside")
        admin = await seed_staff(self.config.env, self.config.box, group_id, "group_admin")
        sites = [first["site_id"], second["site_id"]]

        async def listed() -> bool:
            async with self.config.client(token) as api:
                rows = (await api.get(f"/api/v1/groups/{group_id}/sites")).json()
            return set(sites) <= {r["site_id"] for r in rows}

        await wait_until(listed, timeout=20, message="sites listed")
        return {"group_id": group_id, "token": token, "admin": admin, "sites": sites}

    async def mail_to(self, address: str) -> EmailMessage:
        """The (first) message the sink received for `address`."""

        async def arrived() -> EmailMessage | None:
            for message in self.sink.messages():
                if address in str(message["To"]):
                    return message
            return None

        return await wait_until(arrived, timeout=20, message=f"mail to {address}")

    async def trail(self, token: str, type_prefix: str) -> list[dict[str, Any]]:
        """Audit records of a type (prefix) that the token's group may see."""
        async with httpx.AsyncClient(base_url=self.audit.url, timeout=30) as http:
            answer = await http.get(
                "/api/v1/audit/events",
                params={"type": type_prefix, "limit": 1000},
                headers={"Authorization": f"Bearer {token}"},
            )
        answer.raise_for_status()
        return answer.json()["events"]  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def browser_client(stack: StaffStack, user: StaffLogin) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client with a console session of `user`."""
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        answer = await sign_in(client, user)
        assert answer.status_code == 303, answer.text
        yield client


async def csrf_of(client: httpx.AsyncClient, path: str = "/console/account") -> str:
    """The session's CSRF token, from a page."""
    page = await client.get(path)
    found = CSRF.search(page.text)
    assert found is not None, page.text[:300]
    return found.group(1)


@pytest.fixture(scope="module")
async def stack(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[StaffStack]:
    sink = start_sink_process(tmp_path_factory.mktemp("staff-sink"))
    try:
        async with config_running(
            nats_url,
            tmp_path_factory.mktemp("staff-var"),
            STAGGER_STAFF_MAIL_RELAY=f"127.0.0.1:{sink.port}",
        ) as config:
            audit = start_service("audit", config.env)
            try:
                yield StaffStack(config, audit, sink)
            finally:
                audit.stop()
    finally:
        sink.stop()
