"""The email gateway against real NATS, a real database, real SMTP (the project's aiosmtpd sink)
and, where installed, a real IMAP server (dovecot): sites, submissions, ticks, events."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from nats.aio.client import Client

from services.config.adapters.settings_store import SettingsStore
from services.config.handlers import ConfigHandlers
from services.config.handlers.submission import SubmissionIn, publish, validate
from services.email_gateway.adapters import tables
from services.email_gateway.composition import EmailGatewayService
from services.email_gateway.config import EmailGatewayConfig as GatewaySettings
from shared.bus import subjects
from shared.bus.publisher import Outgoing, publisher_for
from shared.bus.topology import SETTINGS
from shared.config import StaggerConfig
from shared.events.codec import decode, encode
from shared.events.envelope import Envelope, make_event
from shared.events.schemas.dispatch import TERMINAL_TYPES
from shared.events.schemas.ticks import TickIssued
from shared.eventstore import EventStore, replay_batches
from shared.runtime.nats_server import free_port
from shared.runtime.service import running
from shared.secrets import SecretBox, generate_key
from tests.integration.dispatch.test_engine import terminal_counts
from tests.support.imap import Dovecot, dovecot  # noqa: F401  (fixture)
from tests.support.oauth_imap import oauth_dovecot  # noqa: F401  (fixture, issue 19)
from tests.support.oauth_server import auth_server  # noqa: F401  (fixture, issue 19)
from tests.support.oauth_smtp import oauth_smtp  # noqa: F401  (fixture, issue 19)
from tests.support.smtp import smtp_servers  # noqa: F401  (fixture)
from tests.support.waiting import wait_until

PUBLIC_URL = "https://stagger.example"

__all__ = ["EmailHarness", "terminal_counts"]


def email_settings(
    port: int,
    *,
    mode: str = "automatic",
    security: str = "none",
    username: str | None = None,
    password: str | None = None,
    address: str = "front@smile.example",
    display_name: str | None = "Smile Dental, High St",
    preset: str = "custom",
    daily_cap: int | None = None,
    enabled: bool = True,
    imap: dict[str, Any] | None = None,
    open_directly: bool = False,
    host: str = "127.0.0.1",
) -> dict[str, Any]:
    """The email part of a site's settings."""
    smtp: dict[str, Any] = {"host": host, "port": port, "security": security}
    if username is not None:
        smtp["username"] = username
    if password is not None:
        smtp["password"] = password
    data: dict[str, Any] = {
        "enabled": enabled,
        "address": address,
        "display_name": display_name,
        "smtp": smtp,
        "mode": mode,
        "per_minute": 3,
        "provider_preset": preset,
        "open_attachments_directly": open_directly,
    }
    if daily_cap is not None:
        data["daily_cap"] = daily_cap
    if imap is not None:
        data["imap"] = imap
    return data


def imap_settings(
    server: Dovecot,
    user: str,
    *,
    sent_folder: str | None = "Sent Items",
    enabled: bool = True,
    mailbox: str = "INBOX",
) -> dict[str, Any]:
    """IMAP settings pointing at a dovecot test user."""
    data: dict[str, Any] = {
        "enabled": enabled,
        "host": server.host,
        "port": server.port,
        "security": "none",
        "username": user,
        "password": server.users[user],
        "mailbox": mailbox,
    }
    if sent_folder is not None:
        data["sent_folder"] = sent_folder
    return data


@dataclass
class EmailHarness:
    """Sites, submissions and ticks as the config service and scheduler would make them."""

    nc: Client
    nats_url: str
    tmp: Path
    key: str = field(default_factory=generate_key)
    group_id: str = field(default_factory=lambda: f"g-{uuid.uuid4().hex[:8]}")

    @property
    def box(self) -> SecretBox:
        return SecretBox([self.key.encode()])

    @property
    def handlers(self) -> ConfigHandlers:
        return ConfigHandlers(self.nc, SettingsStore(EventStore(self.nc, SETTINGS)), self.box, None)

    async def make_site(
        self, email: dict[str, Any], *, site_id: str | None = None, group_id: str | None = None
    ) -> str:
        group = group_id or self.group_id
        site_id = site_id or f"s-{uuid.uuid4().hex[:8]}"
        handlers = self.handlers
        if await handlers.store.group(group) is None:
            await handlers.create_group(group, group, {}, actor="test")
        await handlers.create_site(
            group, site_id, {"name": site_id}, {"email": email}, actor="test"
        )
        return site_id

    async def change_site(self, site_id: str, patch: dict[str, Any]) -> None:
        handlers = self.handlers
        site = await handlers.site(site_id)
        await handlers.change_site(site_id, site.version, patch, [], actor="test")

    async def submit(
        self,
        site_id: str,
        count: int,
        *,
        category: str = "other",
        prefix: str | None = None,
        to: Any = None,
        extra: dict[str, Any] | None = None,
    ) -> list[str]:
        """Accepted messages, published to the outbox exactly as the API does."""
        prefix = prefix or uuid.uuid4().hex[:6]
        site = await self.handlers.site(site_id)
        messages = []
        for i in range(count):
            address = to(i) if to else f"patient{i}@example.org"
            messages.append(
                {
                    "to": address,
                    "subject": f"Recall {i}",
                    "body": f"Dear patient {i}, your check-up is due.",
                    "category": category,
                    "idempotency_key": f"{prefix}-{i}",
                    **(extra or {}),
                }
            )
        body = SubmissionIn.model_validate({"channel": "email", "messages": messages})
        accepted, outgoing = validate(site, body, "test")
        await publish(self.nc, accepted, outgoing)
        return [a.message_id for a in accepted]

    async def tick(
        self,
        site_id: str,
        budget: int,
        *,
        spacing: float = 0.0,
        manual: bool = False,
        receive: bool = False,
        reason: str = "test cycle",
        valid: timedelta = timedelta(minutes=10),
    ) -> str:
        """Publish one email tick for a site (what the scheduler does)."""
        now = datetime.now(UTC)
        tick_id = uuid.uuid4().hex
        data = TickIssued(
            tick_id=tick_id,
            channel="email",
            scope="site",
            site_id=site_id,
            account="test",
            budget=budget,
            spacing_seconds=spacing,
            scheduled_at=now,
            not_before=now,
            not_after=now + valid,
            reason=reason,
            manual=manual,
            receive=receive,
        )
        headers, payload = encode(make_event(data, source="tests", actor="test", event_id=tick_id))
        await publisher_for(self.nc).publish_all(
            [Outgoing(subjects.tick_site("email", site_id), payload, headers)]
        )
        return tick_id

    async def publish_event(
        self, subject: str, data: Any, *, actor: str = "test:staff", site_id: str | None = None
    ) -> None:
        event = make_event(data, source="tests", actor=actor, site_id=site_id)
        headers, payload = encode(event)
        await publisher_for(self.nc).publish_all([Outgoing(subject, payload, headers)])

    def stagger_settings(self, database_url: str, instance: str = "gw-1") -> StaggerConfig:
        return StaggerConfig(
            nats_url=self.nats_url,
            database_url=database_url,
            var_dir=self.tmp / "var",
            instance_id=instance,
            email_gateway_http_port=free_port(),
            heartbeat_seconds=0.5,
            drain_timeout_seconds=5,
            secret_key=self.key,  # type: ignore[arg-type]
            public_url=PUBLIC_URL,
        )

    @contextlib.asynccontextmanager
    async def gateway(
        self, database_url: str | None = None, *, instance: str = "gw-1", **options: Any
    ) -> AsyncIterator[EmailGatewayService]:
        """One gateway replica in this process."""
        defaults: dict[str, Any] = {
            "recovery_seconds": 0.5,
            "lease_seconds": 10.0,
            "retry_base_seconds": 0.2,
            "retry_cap_seconds": 1.0,
            "reconcile_grace_seconds": 0.2,
            "smtp_timeout_seconds": 10.0,
            "local_hostname": "gateway.test",
        }
        defaults.update(options)
        url = database_url or f"sqlite+aiosqlite:///{self.tmp / 'email.db'}"
        service = EmailGatewayService(GatewaySettings(**defaults))
        async with running(service, self.stagger_settings(url, instance)):
            yield service

    async def events(self, stream: str, subject: str | None = None) -> list[Envelope]:
        """Every event in a stream (or under a subject filter), decoded, in order."""
        found = []
        async for batch in replay_batches(self.nc, stream, filter_subject=subject):
            found += [decode(msg.headers, msg.data) for msg in batch]
        return found

    async def terminal(self) -> Counter[str]:
        """Terminal events per message id."""
        return terminal_counts(await self.events("DISPATCH"))

    async def rpc(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = await self.nc.request(
            subjects.rpc("email_gateway", method), json.dumps(body).encode(), timeout=10
        )
        return json.loads(reply.data)  # type: ignore[no-any-return]


async def states(service: EmailGatewayService) -> Counter[str]:
    m = tables.DISPATCH.messages
    async with service.engine.queue.db() as session:
        rows = await session.execute(sa.select(m.c.state, sa.func.count()).group_by(m.c.state))
        return Counter({r[0]: r[1] for r in rows})


async def queued(service: EmailGatewayService, n: int) -> bool:
    """The gateway holds exactly n messages waiting."""
    return await service.engine.queue.depth() == n


def terminal_of(events: list[Envelope]) -> dict[str, Envelope]:
    return {e.data.message_id: e for e in events if e.type in TERMINAL_TYPES}


@pytest.fixture
async def email(nc: Client, nats_url: str, tmp_path: Path) -> EmailHarness:
    """A fresh set of streams and a harness to drive the gateway."""
    return EmailHarness(nc, nats_url, tmp_path)


async def ticks_done(email: EmailHarness) -> bool:
    """Every tick published so far has been worked through (TICKS is a work queue)."""
    info = await email.nc.jetstream().stream_info("TICKS")
    return info.state.messages == 0


async def drive(
    email: EmailHarness,
    site_id: str,
    done: Any,
    *,
    budget: int = 1000,
    manual: bool = False,
    receive: bool = False,
    period: float = 0.2,
    timeout: float = 40.0,
    message: str = "condition",
) -> None:
    """Act as the scheduler: a cycle tick every `period` until `done()` holds."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        if await done():
            return
        await email.tick(site_id, budget, manual=manual, receive=receive)
        await wait_until(lambda: ticks_done(email), timeout=30, message="tick worked through")
        if await done():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s driving ticks until {message}")
        await asyncio.sleep(period)  # the scheduler's cycle period, not a wait for a condition


async def ended(email: EmailHarness, n: int) -> bool:
    """At least n messages reached their terminal event."""
    return sum((await email.terminal()).values()) >= n
