"""Scheduler test helpers: settings, SETTINGS events, reading ticks, a simulated timer."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from services.scheduler.adapters.clock import SimulatedClock
from services.scheduler.adapters.issuing import JetStreamTicks
from services.scheduler.adapters.projection import SiteRow
from services.scheduler.handlers.directory import SiteDirectory
from services.scheduler.handlers.timer import TickTimer
from shared.bus import subjects
from shared.bus.topology import SETTINGS, TICKS
from shared.domain.planning import Channel, grid_key
from shared.domain.site_settings import SiteSettings
from shared.domain.ticks import grid_offset
from shared.events.codec import decode
from shared.events.envelope import Envelope, make_event
from shared.events.schemas.settings import SiteCreated, SiteSettingsChanged
from shared.events.schemas.ticks import TickIssued
from shared.eventstore import EventStore, stream_position
from tests.support.waiting import wait_until

GROUP = "g-test"
SIM_PROVIDER = {"kind": "simulator", "account_id": "acct-1", "base_url": "http://127.0.0.1:9"}
SMTP = {"host": "smtp.example.com", "port": 587, "username": "frontdesk@example.com"}


def offset_of(site_id: str, channel: Channel, every: timedelta) -> timedelta:
    """The site's grid offset: its ticks fall this long after the plain grid's instants."""
    return grid_offset(grid_key(site_id, channel), every)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def settings(
    *,
    timezone: str = "Europe/London",
    sms: dict[str, Any] | None = None,
    email: dict[str, Any] | None = None,
    blackouts: list[dict[str, Any]] | None = None,
    closures: list[dict[str, Any]] | None = None,
) -> SiteSettings:
    """Site settings: SMS via the simulator and email off unless given."""
    data: dict[str, Any] = {
        "profile": {"name": "Test Site", "timezone": timezone},
        "sms": {"provider": dict(SIM_PROVIDER), **(sms or {})},
        "email": email if email is not None else {"enabled": False},
    }
    if "provider" in (sms or {}):
        data["sms"]["provider"] = {**SIM_PROVIDER, **sms["provider"]}  # type: ignore[index]
    if blackouts is not None:
        data["blackouts"] = blackouts
    if closures is not None:
        data["closures"] = closures
    return SiteSettings.model_validate(data)


def window(days: str | list[str], start: str, end: str) -> dict[str, Any]:
    """A session or blackout: days 'mon-fri', 'all', 'sun' or a list."""
    names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    if isinstance(days, list):
        chosen = days
    elif days == "all":
        chosen = names
    elif days == "mon-fri":
        chosen = names[:5]
    else:
        chosen = [days]
    return {"days": chosen, "start": start, "end": end}


async def publish_site(
    nc: Client,
    site_id: str,
    site_settings: SiteSettings,
    *,
    group_id: str = GROUP,
    created: bool = False,
) -> int:
    """Append a site's settings event to SETTINGS; returns its sequence."""
    snapshot = site_settings.model_dump(mode="json")
    data: SiteCreated | SiteSettingsChanged
    if created:
        data = SiteCreated(
            group_id=group_id, site_id=site_id, overrides={}, settings=snapshot, group_version=1
        )
    else:
        data = SiteSettingsChanged(
            group_id=group_id,
            site_id=site_id,
            cause="site",
            changes=[],
            overrides={},
            settings=snapshot,
            group_version=1,
        )
    event = make_event(
        data,
        source="test",
        actor="user:test",
        subject=site_id,
        group_id=group_id,
        site_id=site_id,
    )
    return await EventStore(nc, SETTINGS).append(subjects.settings_site(group_id, site_id), event)


@dataclass
class ReadTick:
    """A tick read back from the stream, with the server's storage time."""

    tick: TickIssued
    envelope: Envelope
    subject: str
    stored_at: datetime
    sequence: int


@dataclass
class TickReader:
    """Takes ticks off the TICKS work queue as a gateway would (and keeps them)."""

    nc: Client
    durable: str = "test-ticks"
    ticks: list[ReadTick] = field(default_factory=list)
    _sub: Any = None

    async def start(self) -> TickReader:
        js = self.nc.jetstream()
        self._sub = await js.pull_subscribe("ticks.>", durable=self.durable, stream=TICKS)
        return self

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()

    async def poll(self, wait: float = 0.2) -> list[ReadTick]:
        """Fetch what is there now (waiting at most `wait` for the first message)."""
        got: list[ReadTick] = []
        while True:
            try:
                msgs: list[Msg] = await self._sub.fetch(batch=1000, timeout=wait)
            except (nats.errors.TimeoutError, TimeoutError):
                break
            for msg in msgs:
                got.append(_read(msg))
                await msg.ack()
            wait = 0.05
        self.ticks.extend(got)
        return got

    async def until(
        self,
        condition: Callable[[list[ReadTick]], bool],
        *,
        timeout: float = 20.0,
        message: str = "ticks",
    ) -> list[ReadTick]:
        async def check() -> bool:
            await self.poll(0.05)
            return condition(self.ticks)

        await wait_until(check, timeout=timeout, message=message)
        return self.ticks

    def of(self, key: str) -> list[ReadTick]:
        """Ticks of one site or account, by scheduled instant."""
        return sorted(
            (t for t in self.ticks if key in (t.tick.site_id, t.tick.account)),
            key=lambda t: t.tick.scheduled_at,
        )


def _read(msg: Msg) -> ReadTick:
    sequence = stream_position(msg)[0]
    envelope = decode(
        msg.headers, msg.data, stream=TICKS, sequence=sequence, nats_subject=msg.subject
    )
    assert isinstance(envelope.data, TickIssued)
    return ReadTick(envelope.data, envelope, msg.subject, msg.metadata.timestamp, sequence)


@dataclass
class SimScheduler:
    """The real timer and directory, publishing to the real TICKS stream, on simulated time."""

    nc: Client
    clock: SimulatedClock
    timer: TickTimer
    directory: SiteDirectory
    versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    task: asyncio.Task[None] | None = None

    def set_site(self, site_id: str, site_settings: SiteSettings, group_id: str = GROUP) -> None:
        row = SiteRow(site_id, group_id, next(self.versions), site_settings.model_dump(mode="json"))
        assert self.directory.offer([row]) == 1

    def start(self) -> None:
        self.task = asyncio.create_task(self.timer.run())

    async def run_until(self, instant: datetime, timeout: float = 120.0) -> None:
        assert self.task is not None
        async with asyncio.timeout(timeout):
            await self.clock.run_until(instant)
        if self.task.done():
            self.task.result()

    async def stop(self) -> None:
        if self.task is not None:
            self.timer.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self.task, 30)


@contextlib.asynccontextmanager
async def sim_scheduler(
    nc: Client,
    start: datetime,
    *,
    account_period: timedelta = timedelta(seconds=1),
    grace: timedelta = timedelta(seconds=1),
) -> AsyncIterator[SimScheduler]:
    clock = SimulatedClock(start)
    timer = TickTimer(JetStreamTicks(nc), clock, account_period=account_period, grace=grace)
    sim = SimScheduler(nc, clock, timer, SiteDirectory(timer))
    try:
        yield sim
    finally:
        await sim.stop()


def scrape(url: str, name: str) -> float:
    """Sum of a Prometheus metric's samples on a replica's /metrics."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=5).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


async def time_passes(until: datetime, message: str = "time to pass") -> None:
    """Wait until the wall clock reaches `until` (for tests about time itself)."""
    seconds = (until - datetime.now(UTC)).total_seconds()
    await wait_until(
        lambda: datetime.now(UTC) >= until,
        timeout=max(1.0, seconds + 5),
        interval=0.05,
        message=message,
    )
