"""The gateway side of the 14-day simulation: the real delivery engine on simulated time.

`DispatchEngine` reads the time and waits through its `Clock` port; the wall clock cannot run two
weeks in a test. Each engine here is built with an `EngineClock`, and `engine_on_simulated_time`
points the queue, limiter and recorder modules (and the SMS adapter's quiet-hours re-check) at
the same clock:

* `now()` is the instant of the tick being worked on, which the driver sets to the tick's
  `not_before` just before handing it to `DispatchEngine.take_tick` — what a gateway replica
  sees when it takes a tick on time;
* a send task's waits (`asyncio.sleep`, or `asyncio.wait_for` on the drain event: the engine
  pacing a tick's messages `spacing` apart) move that task's own clock forward instead of
  waiting, so each send happens at the simulated instant the engine chose for it. Waits of
  any other task (the tick's keep-alive) are real.

Everything else is the real code: decoding and checking ticks, claiming up to the budget from
the SQL queue under leases, the quiet-hours guard (before the claim and again just before the
provider call), the account limiter, group-committed `sent` outcomes. Only the provider is a
double that records what reached it and when.
"""

from __future__ import annotations

import asyncio
import contextvars
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import nats.errors
import pytest
import sqlalchemy as sa
from nats.aio.client import Client
from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncEngine

import services.sms_gateway.handlers.channel as sms_adapter_module
import shared.dispatch.limits as limits_module
import shared.dispatch.outcomes as outcomes_module
import shared.dispatch.queue.claims
import shared.dispatch.queue.core
import shared.dispatch.queue.intake
import shared.dispatch.queue.operator
import shared.dispatch.queue.outcomes
from services.email_gateway.adapters.channel import EmailAdapter
from services.sms_gateway.adapters.optouts import BusOptOuts
from services.sms_gateway.adapters.providers.base import Found, Outbound, SendReply
from services.sms_gateway.handlers.channel import SmsAdapter
from shared.bus.deadletter import NatsDeadLetters
from shared.bus.topology import CONSUMERS_BY_NAME, DEADLETTER
from shared.db.engine import create_engine, session_factory
from shared.dispatch.adapter import ChannelAdapter, SendResult
from shared.dispatch.engine import DispatchEngine
from shared.dispatch.limits import AccountLimits
from shared.dispatch.outcomes import SentRecorder
from shared.dispatch.pending_events import EventRelay
from shared.dispatch.queue import Claimed, MessageQueue
from shared.dispatch.schema import DispatchTables, tables
from shared.dispatch.sending import Sender
from shared.dispatch.tuning import EngineTuning
from shared.events.codec import decode
from shared.events.schemas.ticks import TickIssued
from shared.secrets import SecretBox, generate_key
from shared.sites import Site, SiteDirectory
from shared.suppression import SuppressionList

_ATTEMPT = Sender.attempt.__qualname__


class EngineClock:
    """Simulated time for the engine: the current tick's instant, plus per-task pacing."""

    def __init__(self, start: datetime) -> None:
        self.base = start
        self._ahead: contextvars.ContextVar[datetime | None] = contextvars.ContextVar(
            "engine_clock_ahead", default=None
        )

    def now(self) -> datetime:
        """The simulated instant as seen by the running task."""
        ahead = self._ahead.get()
        return ahead if ahead is not None and ahead > self.base else self.base

    def move_to(self, instant: datetime) -> None:
        """The driver moves time forward (never back) to a tick's instant."""
        self.base = max(self.base, instant)

    @staticmethod
    def _pacing() -> bool:
        """True inside a send task: its waits are the engine pacing the tick's messages."""
        task = asyncio.current_task()
        return task is not None and task.get_coro().__qualname__ == _ATTEMPT  # type: ignore[union-attr]

    async def sleep(self, delay: float, result: Any = None) -> Any:
        """`asyncio.sleep` as the engine module sees it (see module docstring)."""
        if delay > 0 and self._pacing():
            # Context variables are per task: only this send's clock moves.
            self._ahead.set(self.now() + timedelta(seconds=delay))
            await asyncio.sleep(0)
            return result
        return await asyncio.sleep(delay, result)

    async def wait_for(self, awaitable: Any, timeout: float | None) -> Any:
        """`asyncio.wait_for` as the engine module sees it: a send task waiting for its slot
        (or for a drain, whichever comes first) reaches its slot at once in simulated time,
        unless the awaited event has already happened."""
        if timeout is None or timeout <= 0 or not self._pacing():
            return await asyncio.wait_for(awaitable, timeout)
        waiter = asyncio.ensure_future(awaitable)
        await asyncio.sleep(0)
        if waiter.done():
            return waiter.result()
        waiter.cancel()
        self._ahead.set(self.now() + timedelta(seconds=timeout))
        raise TimeoutError


def _datetime_of(clock: EngineClock) -> type[datetime]:
    class SimulatedDatetime(datetime):
        """`datetime` whose `now` is the engine clock's."""

        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return clock.now().astimezone(tz)

    return SimulatedDatetime


def engine_on_simulated_time(monkeypatch: pytest.MonkeyPatch, clock: EngineClock) -> None:
    """Point the delivery engine, its queue, limiter, recorder and the SMS adapter at `clock`."""
    simulated = _datetime_of(clock)
    for module in (
        shared.dispatch.queue.claims,
        shared.dispatch.queue.core,
        shared.dispatch.queue.intake,
        shared.dispatch.queue.operator,
        shared.dispatch.queue.outcomes,
        limits_module,
        outcomes_module,
        sms_adapter_module,
    ):
        monkeypatch.setattr(module, "datetime", simulated)


# --- the provider doubles -----------------------------------------------------------------------


@dataclass
class Delivery:
    """One message as it reached the provider."""

    channel: str
    message_id: str
    recipient: str
    at: datetime


@dataclass
class Receiver:
    """The receiving end of both channels: every message that reached a provider, and when."""

    clock: EngineClock
    deliveries: list[Delivery] = field(default_factory=list)

    def take(self, channel: str, message_id: str, recipient: str) -> None:
        self.deliveries.append(Delivery(channel, message_id, recipient, self.clock.now()))

    def copies(self) -> Counter[str]:
        """Message id → how many times it reached the provider."""
        return Counter(d.message_id for d in self.deliveries)


class RecordingSmsProvider:
    """An SMS provider that accepts everything and records it (the simulator's contract)."""

    kind = "simulator"
    needs_sender = False
    max_body_chars = 1600

    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver
        self._by_reference: dict[str, str] = {}

    async def send(self, message: Outbound) -> SendReply:
        self._receiver.take("sms", message.reference, message.to)
        self._by_reference[message.reference] = f"p-{message.reference}"
        return SendReply("accepted", provider_message_id=f"p-{message.reference}", segments=1)

    async def lookup(self, message: Outbound, taken: Sequence[str] = ()) -> Found:
        found = self._by_reference.get(message.reference)
        return Found(found is not None, found)


class _Providers:
    def __init__(self, provider: RecordingSmsProvider) -> None:
        self._provider = provider

    def for_site(self, site: Site) -> RecordingSmsProvider:
        return self._provider


class _Credits:
    async def after_send(self, *args: Any) -> None:
        return None

    async def refused(self, *args: Any, **kwargs: Any) -> None:
        return None


def sms_adapter(nc: Client, provider: RecordingSmsProvider) -> SmsAdapter:
    """The real SMS adapter (opt-outs, validity, quiet hours) in front of the recording double."""
    suppression = SuppressionList(nc)
    return SmsAdapter(
        default_sender="Stagger",
        suppression=lambda: suppression,
        providers=lambda: _Providers(provider),  # type: ignore[arg-type,return-value]
        credits=_Credits(),  # type: ignore[arg-type]
        ledger=None,  # type: ignore[arg-type]  # only Twilio lookups read it
        queue=lambda: None,  # type: ignore[arg-type,return-value]  # only provider opt-outs
        optouts=BusOptOuts(lambda: nc),
    )


class RecordingEmailAdapter(EmailAdapter):
    """The real email adapter's accounts, limits and checks; SMTP replaced by a recorder."""

    def __init__(self, nc: Client, receiver: Receiver) -> None:
        # Only what accounts, limits and `check` use (no SMTP pool, no IMAP).
        self.box = SecretBox([generate_key().encode()])
        self.suppression = SuppressionList(nc)
        self._per_site = {}
        self._receiver = receiver

    async def send(self, claimed: Claimed, site: Site) -> SendResult:
        self._receiver.take("email", claimed.message_id, claimed.recipient)
        return SendResult("sent", provider_message_id=f"<{claimed.message_id}@sim>")

    async def on_tick(self, tick: TickIssued, sites: Sequence[Site]) -> None:
        return None  # no mailbox to read


# --- the gateway ----------------------------------------------------------------------------------


class _TickDelivery:
    """What `take_tick` needs of FastStream's message: the raw NATS message and acks."""

    def __init__(self, msg: Msg) -> None:
        self.raw_message = msg

    async def ack(self) -> None:
        await self.raw_message.ack()

    async def nack(self) -> None:
        await self.raw_message.nak()

    async def in_progress(self) -> None:
        await self.raw_message.in_progress()


@dataclass
class Channel:
    """One channel's engine with its tables and consumers."""

    name: str
    engine: DispatchEngine[MessageQueue, SiteDirectory]
    tables: DispatchTables
    ticks: Any = None
    outbox: Any = None
    recorder_task: asyncio.Task[None] | None = None


class SimGateway:
    """The SMS and email delivery engines of one gateway replica, on simulated time."""

    def __init__(self, nc: Client, db_url: str, receiver: Receiver) -> None:
        self.nc = nc
        self.db_url = db_url
        self.receiver = receiver
        self.sites = SiteDirectory(nc)
        self.sms_provider = RecordingSmsProvider(receiver)
        self.metadata = sa.MetaData()
        # Leases far longer than any spacing wait: no crash is simulated here, and a lease
        # extension per paced message would only cost database round trips.
        self.tuning = EngineTuning(parallel_sends=64, lease_seconds=7 * 86_400)
        self.adapters: dict[str, ChannelAdapter] = {
            "sms": sms_adapter(nc, self.sms_provider),
            "email": RecordingEmailAdapter(nc, receiver),
        }
        self.tables = {name: tables(name, self.metadata) for name in self.adapters}
        self.channels: dict[str, Channel] = {}
        self._db: AsyncEngine | None = None
        self._follow: asyncio.Task[None] | None = None
        self.ticks_taken = 0

    async def start(self) -> None:
        """Create the tables, follow SETTINGS, wire each engine's parts, bind the consumers."""
        self._db = create_engine(self.db_url)
        async with self._db.begin() as conn:
            await conn.run_sync(self.metadata.create_all)
        db = session_factory(self._db)
        self._follow = asyncio.create_task(self.sites.follow())
        await asyncio.wait_for(self.sites.ready.wait(), 30)
        js = self.nc.jetstream()
        for name, adapter in self.adapters.items():
            channel_tables = self.tables[name]
            queue = MessageQueue(
                db,
                channel_tables,
                name,
                owner=f"sim/{secrets.token_hex(4)}",
                source=f"{name}_gateway",
            )
            # Dispatch events stay in the pending table: nothing here reads the DISPATCH stream.
            relay = EventRelay(self.nc, db, channel_tables.pending_events)
            recorder = SentRecorder(queue, relay.nudge)
            engine = DispatchEngine(
                channel=name,
                adapter=adapter,
                queue=queue,
                limits=AccountLimits(db, channel_tables.limiters, queue),
                relay=relay,
                recorder=recorder,
                sites=self.sites,
                dead_letters=NatsDeadLetters(self.nc),
                tuning=self.tuning,
                clock=self.receiver.clock,
            )
            channel = self.channels[name] = Channel(name, engine, channel_tables)
            channel.recorder_task = asyncio.create_task(recorder.run())
            for role in ("ticks", "outbox"):
                spec = CONSUMERS_BY_NAME[f"{channel.name}-{role}"]
                await js.add_consumer(spec.stream, config=spec.config())
                sub = await js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
                setattr(channel, role, sub)

    async def wait_for_sites(self, site_ids: Sequence[str]) -> None:
        """Until every site's settings are known here."""
        for site_id in site_ids:
            assert await self.sites.wait_for(site_id, patience=30) is not None, site_id

    async def take_in(self, channel: str, expected: int, patience: float = 90.0) -> None:
        """Store accepted messages from the outbox (the engine's real intake) until `expected`
        are queued. Patient: a message handed to a fetch that timed out on the client comes
        back only after the consumer's ack wait (30 s)."""
        ch = self.channels[channel]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        while (depth := await ch.engine.queue.depth()) < expected:
            if loop.time() > deadline:
                js = self.nc.jetstream()
                dead = await js.stream_info(DEADLETTER)
                spec = CONSUMERS_BY_NAME[f"{channel}-outbox"]
                consumer = await js.consumer_info(spec.stream, spec.durable)
                stream = await js.stream_info(spec.stream)
                raise AssertionError(
                    f"{channel}: only {depth} of {expected} queued, "
                    f"{dead.state.messages} dead-lettered; outbox {stream.state}, "
                    f"consumer pending {consumer.num_pending} ack-pending "
                    f"{consumer.num_ack_pending} redelivered {consumer.num_redelivered} "
                    f"delivered {consumer.delivered}"
                )
            try:
                batch = await ch.outbox.fetch(batch=500, timeout=1)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            await ch.engine.intake(batch)

    async def fetch_ticks(self, count: int) -> list[tuple[TickIssued, Msg]]:
        """Take exactly `count` ticks off both channels' tick consumers (they were published
        and acknowledged by JetStream already)."""
        got: list[tuple[TickIssued, Msg]] = []
        subs = [c.ticks for c in self.channels.values()]
        idle = 0
        while len(got) < count:
            progressed = False
            for sub in subs:
                try:
                    msgs = await sub.fetch(batch=1000, timeout=0.05)
                except (nats.errors.TimeoutError, TimeoutError):
                    continue
                progressed = True
                for msg in msgs:
                    tick = decode(msg.headers, msg.data).data
                    assert isinstance(tick, TickIssued)
                    got.append((tick, msg))
            idle = 0 if progressed else idle + 1
            if idle > 100:
                raise AssertionError(f"only {len(got)} of {count} published ticks arrived")
        assert len(got) == count, f"{len(got)} ticks arrived, {count} were published"
        return got

    async def work(self, clock: EngineClock, ticks: list[tuple[TickIssued, Msg]]) -> None:
        """Give each tick, in time order, to its engine at the tick's instant."""
        for tick, msg in sorted(ticks, key=lambda t: (t[0].not_before, t[0].tick_id)):
            clock.move_to(tick.not_before)
            engine = self.channels[tick.channel].engine
            await engine.take_tick(_TickDelivery(msg))  # type: ignore[arg-type]
            # A spaced tick's sends run on after the tick is taken; in simulated time they
            # all happen before the clock moves to the next tick.
            await engine.settled()
            self.ticks_taken += 1

    async def ledger(self, channel: str) -> dict[str, tuple[str, str]]:
        """Message id → (site, state) in the gateway's SQL ledger."""
        ch = self.channels[channel]
        m = ch.tables.messages
        async with ch.engine.queue.db() as session:
            rows = await session.execute(sa.select(m.c.message_id, m.c.site_id, m.c.state))
            return {r[0]: (r[1], r[2]) for r in rows}

    async def stop(self) -> None:
        tasks = [c.recorder_task for c in self.channels.values() if c.recorder_task]
        if self._follow is not None:
            tasks.append(self._follow)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in self.channels.values():
            for sub in (channel.ticks, channel.outbox):
                if sub is not None:
                    await sub.unsubscribe()
        if self._db is not None:
            await self._db.dispose()
