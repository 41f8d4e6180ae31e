"""Run the delivery engine in-process against real NATS and a real database, with a
provider double that records every send (used to test the engine without a real channel)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from services.config.adapters.settings_store import SettingsStore
from services.config.handlers import ConfigHandlers
from services.config.handlers.submission import SubmissionIn, publish, validate
from shared.bus import subjects
from shared.bus.deadletter import NatsDeadLetters
from shared.bus.publisher import Outgoing, publisher_for
from shared.bus.topology import SETTINGS
from shared.config import StaggerConfig
from shared.dispatch.adapter import SEND, AccountLimitsSpec, Reconciled, SendResult, Verdict
from shared.dispatch.engine import DispatchEngine, follow_sites, sql_parts
from shared.dispatch.queue import Claimed, MessageQueue
from shared.dispatch.schema import tables
from shared.dispatch.subscribers import declare_subscribers
from shared.dispatch.tuning import EngineTuning
from shared.domain.accounts import sms_account_id
from shared.domain.ticks import tick_id
from shared.events.codec import encode
from shared.events.envelope import make_event
from shared.events.schemas.ticks import TickIssued
from shared.eventstore import EventStore
from shared.runtime.service import BaseService, ServiceContext, running
from shared.secrets import SecretBox, generate_key
from shared.sites import Site, SiteDirectory

metadata = sa.MetaData()
SMS_TABLES = tables("sms", metadata)
MIGRATIONS = Path(__file__).resolve().parents[3] / "services" / "sms_gateway" / "migrations"


@dataclass
class FakeProvider:
    """Records sends; scripted to fail, hold or stall."""

    sent: list[tuple[str, datetime]] = field(default_factory=list)
    script: dict[str, list[SendResult]] = field(default_factory=dict)
    suppressed: set[str] = field(default_factory=set)
    stall: asyncio.Event | None = None
    known: set[str] = field(default_factory=set)
    # Seconds the first send takes before its provider call begins (as when the call is made
    # by a child process that has to start first).
    first_call_late: float = 0.0
    # Sends that reached the provider and wait on `stall`.
    stalled: int = 0

    def count(self, message_id: str) -> int:
        return sum(1 for m, _ in self.sent if m == message_id)


class FakeAdapter:
    channel = "sms"

    def __init__(self, provider: FakeProvider, interval: timedelta | None = None) -> None:
        self.provider = provider
        self.interval = interval

    def account_for(self, site: Site) -> str | None:
        return sms_account_id(site.settings.sms.provider, site.group_id)

    def failover(self, site: Site) -> Site | None:
        return None

    def limits_for(self, site: Site) -> AccountLimitsSpec:
        return AccountLimitsSpec(interval=self.interval)

    async def check(self, claimed: Claimed, site: Site, now: datetime) -> Verdict:
        if claimed.recipient in self.provider.suppressed:
            return Verdict("suppress", "opted out")
        return SEND

    async def send(self, claimed: Claimed, site: Site) -> SendResult:
        if self.provider.stall is not None:
            self.provider.stalled += 1
            await self.provider.stall.wait()
        late, self.provider.first_call_late = self.provider.first_call_late, 0.0
        if late:
            await asyncio.sleep(late)
        scripted = self.provider.script.get(claimed.message_id)
        if scripted:
            result = scripted.pop(0)
            if result.outcome == "sent":
                self.provider.sent.append((claimed.message_id, datetime.now(UTC)))
                self.provider.known.add(claimed.message_id)
            return result
        began_at = datetime.now(UTC)
        self.provider.sent.append((claimed.message_id, began_at))
        self.provider.known.add(claimed.message_id)
        return SendResult("sent", provider_message_id=f"p-{claimed.message_id}", began_at=began_at)

    async def reconcile(self, claimed: Claimed, site: Site) -> Reconciled:
        return Reconciled(claimed.message_id in self.provider.known, f"p-{claimed.message_id}")

    async def on_tick(self, tick: TickIssued, sites: Sequence[Site]) -> None:
        return None

    async def account_resumed(self, account: str, site: Site) -> bool:
        return False


class EngineService(BaseService):
    name = "sms_gateway"

    def __init__(self, adapter: FakeAdapter, tuning: EngineTuning) -> None:
        self.adapter = adapter
        self.tuning = tuning
        self.engine: DispatchEngine[MessageQueue, SiteDirectory]

    def migrations(self) -> Path:
        return MIGRATIONS

    def register(self, ctx: ServiceContext) -> None:
        declare_subscribers(
            ctx.broker, channel="sms", tuning=self.tuning, engine=lambda: self.engine
        )

    async def start(self, ctx: ServiceContext) -> None:
        parts = sql_parts(ctx.db, ctx.nc, SMS_TABLES, "sms", instance_id=ctx.config.instance_id)
        sites = SiteDirectory(ctx.nc)
        self.engine = DispatchEngine(
            channel="sms",
            adapter=self.adapter,
            queue=parts.queue,
            limits=parts.limits,
            relay=parts.relay,
            recorder=parts.recorder,
            sites=sites,
            dead_letters=NatsDeadLetters(ctx.nc),
            tuning=self.tuning,
        )
        await follow_sites(ctx, sites)
        await self.engine.start(ctx)

    async def drain(self, ctx: ServiceContext) -> None:
        await self.engine.drain()


@contextlib.asynccontextmanager
async def engine_running(
    nats_url: str,
    database_url: str,
    var_dir: Path,
    adapter: FakeAdapter,
    engine_settings: EngineTuning | None = None,
    instance: str = "replica-1",
) -> AsyncIterator[EngineService]:
    settings = StaggerConfig(
        nats_url=nats_url,
        database_url=database_url,
        var_dir=var_dir,
        instance_id=instance,
        sms_gateway_http_port=_free(),
        heartbeat_seconds=0.5,
        drain_timeout_seconds=5,
        sms_simulator_enabled=True,
    )
    service = EngineService(adapter, engine_settings or EngineTuning(recovery_seconds=0.5))
    async with running(service, settings):
        yield service


def _free() -> int:
    from shared.runtime.nats_server import free_port

    return free_port()


def config_handlers(nc: Any) -> ConfigHandlers:
    """Settings commands as the tests' operator (a throwaway key; the simulator offered)."""
    return ConfigHandlers(
        nc,
        SettingsStore(EventStore(nc, SETTINGS)),
        SecretBox([generate_key().encode()]),
        None,
        simulator_enabled=True,
    )


async def make_site(nc: Any, *, group: str, site: str, account: str = "acct-1") -> None:
    handlers = config_handlers(nc)
    if await handlers.store.group(group) is None:
        await handlers.create_group(group, group, {}, actor="test")
    await handlers.create_site(
        group,
        site,
        {"name": site},
        {"sms": {"provider": {"kind": "simulator", "account_id": account, "secret": "s"}}},
        actor="test",
    )


async def submit(nc: Any, site_id: str, count: int, prefix: str = "m") -> list[str]:
    handlers = config_handlers(nc)
    site = await handlers.site(site_id)
    body = SubmissionIn.model_validate(
        {
            "channel": "sms",
            "messages": [
                {"to": f"+4477009{i:05d}", "body": f"hello {i}", "idempotency_key": f"{prefix}-{i}"}
                for i in range(count)
            ],
        }
    )
    accepted, outgoing = validate(site, body, "test")
    await publish(nc, accepted, outgoing)
    return [a.message_id for a in accepted]


async def send_tick(
    nc: Any,
    site_id: str,
    budget: int,
    *,
    spacing: float = 0.0,
    manual: bool = False,
    not_after: timedelta = timedelta(minutes=5),
    at: datetime | None = None,
) -> str:
    now = at or datetime.now(UTC)
    tid = tick_id(site_id, "sms", now)
    data = TickIssued(
        tick_id=tid,
        channel="sms",
        scope="site",
        site_id=site_id,
        account="acct",
        budget=budget,
        spacing_seconds=spacing,
        scheduled_at=now,
        not_before=now,
        not_after=now + not_after,
        reason="test tick",
        manual=manual,
    )
    headers, body = encode(make_event(data, source="tests", actor="test", event_id=tid))
    await publisher_for(nc).publish_all(
        [Outgoing(subjects.tick_site("sms", site_id), body, headers)]
    )
    return tid
