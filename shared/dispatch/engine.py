"""The delivery engine a gateway runs, composed in one step from parts built beforehand.

- **Intake** (`intake.py`): the outbox consumer's batches into the SQL queue, each once.
- **Ticks** (`ticks.py`, `release.py`, `sending.py`): one replica takes each tick, claims up to
  its budget under a lease, checks each message, reserves slots from the account's limiter
  and sends them `spacing` apart; every message ends in exactly one terminal state.
- **Recovery** (`recovery.py`): a crashed replica's leases are taken over and its sends
  reconciled with the provider, never resent blindly.
- **Commands** (`commands.py`): cancel, reset-failed and a gateway's own.

A gateway's composition root builds the parts (`sql_parts`, a `SiteDirectory`, its channel
adapter), then `DispatchEngine(...)`, then `await engine.start(ctx)` for the background work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from faststream.nats import NatsMessage
from nats.aio.client import Client
from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.bus.pull_loop import PullLoop, settle
from shared.bus.topology import CONSUMERS_BY_NAME
from shared.dispatch.clock import SYSTEM_CLOCK
from shared.dispatch.commands import CommandHandler, Commands
from shared.dispatch.flight import Arrivals, Flight
from shared.dispatch.intake import Intake
from shared.dispatch.limits import AccountLimits
from shared.dispatch.outcomes import SentRecorder
from shared.dispatch.pending_events import EventRelay
from shared.dispatch.ports import (
    ChannelAdapter,
    Clock,
    DeadLetterSink,
    Limiter,
    Queue,
    Recorder,
    Relay,
    Sites,
)
from shared.dispatch.queue import MessageQueue
from shared.dispatch.recovery import Recovery
from shared.dispatch.release import Releaser
from shared.dispatch.schema import DispatchTables
from shared.dispatch.sending import Sender
from shared.dispatch.ticks import Ticks
from shared.dispatch.tuning import EngineTuning
from shared.events.schemas.ticks import TickIssued
from shared.runtime.service import ServiceContext
from shared.sites import SiteDirectory

log = logging.getLogger(__name__)

Q = TypeVar("Q", bound=Queue)
S = TypeVar("S", bound=Sites)


@dataclass(frozen=True)
class SqlParts:
    """A channel's SQL-backed parts: its queue, account limiter, event relay, sent recorder."""

    queue: MessageQueue
    limits: AccountLimits
    relay: EventRelay
    recorder: SentRecorder


def sql_parts(
    db: async_sessionmaker[AsyncSession],
    nc: Client,
    tables: DispatchTables,
    channel: str,
    *,
    instance_id: str,
) -> SqlParts:
    """Build one channel's SQL parts on a database and a NATS connection."""
    # Unique per start: leases are renewed by owner, and a replica restarted under the same
    # instance id must not keep alive the leases its previous life left behind.
    owner = f"{instance_id}/{uuid.uuid4().hex[:8]}"
    queue = MessageQueue(db, tables, channel, owner=owner, source=f"{channel}_gateway")
    limits = AccountLimits(db, tables.limiters, queue)
    relay = EventRelay(nc, db, tables.pending_events)
    return SqlParts(queue, limits, relay, SentRecorder(queue, relay.nudge))


async def follow_sites(ctx: ServiceContext, sites: SiteDirectory) -> None:
    """Follow site settings for the life of the process; return once they are loaded."""
    ctx.spawn(sites.follow(), "sites")

    async def sites_loaded() -> bool:
        return sites.ready.is_set()

    ctx.health.add_check("sites", sites_loaded)
    await asyncio.wait_for(sites.ready.wait(), ctx.config.startup_timeout_seconds)


class DispatchEngine(Generic[Q, S]):
    """One channel's delivery inside a gateway service (generic in its queue and site
    directory, so that a gateway sees the concrete ones it passed in)."""

    def __init__(
        self,
        *,
        channel: str,
        adapter: ChannelAdapter,
        queue: Q,
        limits: Limiter,
        relay: Relay,
        recorder: Recorder,
        sites: S,
        dead_letters: DeadLetterSink,
        tuning: EngineTuning | None = None,
        clock: Clock = SYSTEM_CLOCK,
        commands: Mapping[type, CommandHandler] | None = None,
    ) -> None:
        self.channel = channel
        self.adapter = adapter
        self.queue = queue
        self.limits = limits
        self.relay = relay
        self.recorder = recorder
        self.sites = sites
        self.dead_letters = dead_letters
        self.tuning = tuning = tuning or EngineTuning()
        self.clock = clock
        self.flight = Flight(tuning, clock)
        arrivals = Arrivals()
        self.intake_handler = Intake(
            channel=channel, queue=queue, sites=sites, relay=relay, arrivals=arrivals, tuning=tuning
        )
        self.sender = Sender(
            channel=channel,
            adapter=adapter,
            queue=queue,
            limits=limits,
            recorder=recorder,
            relay=relay,
            flight=self.flight,
            tuning=tuning,
            clock=clock,
        )
        self.releaser = Releaser(
            channel=channel,
            adapter=adapter,
            queue=queue,
            limits=limits,
            sites=sites,
            flight=self.flight,
            sender=self.sender,
            clock=clock,
        )
        self.ticks = Ticks(
            channel=channel,
            adapter=adapter,
            queue=queue,
            sites=sites,
            relay=relay,
            releaser=self.releaser,
            flight=self.flight,
            arrivals=arrivals,
            dead_letters=dead_letters,
            tuning=tuning,
            clock=clock,
        )
        self.recovery = Recovery(
            channel=channel,
            adapter=adapter,
            queue=queue,
            sites=sites,
            relay=relay,
            flight=self.flight,
            tuning=tuning,
            clock=clock,
        )
        self.commands = Commands(
            channel=channel, queue=queue, relay=relay, dead_letters=dead_letters, extra=commands
        )
        self._intake_loop: PullLoop | None = None

    @property
    def draining(self) -> bool:
        """True once the replica stopped starting sends."""
        return self.flight.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self.flight.draining = value
        if value and self._intake_loop is not None:
            self._intake_loop.stop()

    # --- handlers (what the subscribers and tests call) ------------------------------

    async def take_tick(self, msg: NatsMessage) -> None:
        """Handle one tick message end to end (acknowledged when its sends are done)."""
        await self.ticks.take(msg)

    async def run_tick(self, tick: TickIssued) -> int:
        """Release up to the tick's budget of messages; returns how many were attempted."""
        return await self.ticks.run(tick)

    async def intake(self, batch: Sequence[Msg]) -> None:
        """Store a batch of accepted messages and settle each (ack, retry or dead-letter)."""
        verdicts = await self.intake_handler.handle(batch)
        await settle(batch, verdicts, self.dead_letters, f"{self.channel}-outbox")

    async def command(self, msg: Msg) -> None:
        """Apply one operator command from CONTROL."""
        await self.commands.apply(msg)

    async def recover(self) -> int:
        """Reconcile sends interrupted by a crashed replica; returns how many were settled."""
        return await self.recovery.recover()

    async def expire(self) -> None:
        """Queued messages past their `expires_at` end expired."""
        await self.recovery.expire()

    async def purge_finished(self) -> int:
        """Drop finished messages past the retention period; returns how many went."""
        return await self.recovery.purge_finished()

    # --- life cycle ------------------------------------------------------------------

    async def start(self, ctx: ServiceContext) -> None:
        """Start the background work: intake, event relay, sent recorder, leases, recovery,
        expiry, metrics, retention."""
        tuning = self.tuning
        self._intake_loop = PullLoop(
            ctx.js,
            CONSUMERS_BY_NAME[f"{self.channel}-outbox"],
            self.intake_handler.handle,
            self.dead_letters,
            batch=tuning.intake_batch,
            fetch_timeout=0.25,
            retry_delay=1.0,
        )
        ctx.spawn(self._intake_loop.run(), "intake")
        ctx.spawn(self.relay.run(), "event-relay")
        ctx.spawn(self.recorder.run(), "sent-recorder")
        recovery = self.recovery
        ctx.spawn(self._every(tuning.lease_seconds / 3, recovery.renew_leases), "leases")
        ctx.spawn(self._every(tuning.recovery_seconds, recovery.recover), "recovery")
        ctx.spawn(self._every(tuning.expiry_seconds, recovery.expire), "expiry")
        ctx.spawn(self._every(15.0, recovery.report_depth), "queue-metrics")
        if tuning.retention_days > 0:
            ctx.spawn(self._every(3600.0, recovery.purge_finished), "retention")

    async def drain(self) -> None:
        """Stop starting sends; let the ones in flight finish; publish what is pending."""
        self.flight.start_draining()
        if self._intake_loop is not None:
            self._intake_loop.stop()
        # A tick run may still launch a send or two after the flag is set (it checks between
        # messages): wait until no send is left, not only for the ones present now.
        await self.settled()
        with contextlib.suppress(Exception):
            await self.relay.flush()

    async def settled(self) -> None:
        """Until no send is in flight (a simulated-time driver waits for them)."""
        await self.flight.settled()

    async def _every(self, seconds: float, work: Callable[[], Awaitable[object]]) -> None:
        while True:
            try:
                await work()
            except Exception:
                log.exception("periodic work failed", extra={"work": work.__name__})
            await asyncio.sleep(seconds)
