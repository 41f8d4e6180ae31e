"""Ticks: one replica takes each; it claims up to the tick's budget of the site's (or the
account's sites') oldest sendable messages under a lease and releases them, paced."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from datetime import timedelta
from typing import Any

from faststream.nats import NatsMessage
from pydantic import ValidationError

from shared.bus.deadletter import DeadLetter
from shared.bus.topology import CONSUMERS_BY_NAME
from shared.dispatch.checks import tick_problem
from shared.dispatch.flight import Arrivals, Flight, TickRun
from shared.dispatch.metrics import TICK_LAG, TICKS_SEEN
from shared.dispatch.ports import ChannelAdapter, Clock, DeadLetterSink, Queue, Relay, Sites
from shared.dispatch.queue import Key
from shared.dispatch.release import Releaser
from shared.dispatch.tuning import SHORT_TICK_SECONDS, EngineTuning
from shared.events.codec import UndecodableEvent, decode
from shared.events.schemas.dispatch import Release
from shared.events.schemas.ticks import TickIssued

log = logging.getLogger(__name__)


def pace_key(site_id: str) -> str:
    """The limiter row that paces one site's spaced sends (fits the 64-character key)."""
    key = f"site:{site_id}"
    if len(key) <= 64:
        return key
    return "site#" + hashlib.sha256(site_id.encode()).hexdigest()[:40]


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a spaced send failed", exc_info=task.exception())


class Ticks:
    """Handles tick messages: decode, hold until `not_before`, run, acknowledge."""

    def __init__(
        self,
        *,
        channel: str,
        adapter: ChannelAdapter,
        queue: Queue,
        sites: Sites,
        relay: Relay,
        releaser: Releaser,
        flight: Flight,
        arrivals: Arrivals,
        dead_letters: DeadLetterSink,
        tuning: EngineTuning,
        clock: Clock,
    ) -> None:
        self.channel = channel
        self.adapter = adapter
        self.queue = queue
        self.sites = sites
        self.relay = relay
        self.releaser = releaser
        self.flight = flight
        self.arrivals = arrivals
        self.dead_letters = dead_letters
        self.tuning = tuning
        self.clock = clock
        # Tick workers an idle account's tick may hold while it waits for intake (see
        # `_more_arrived`): at most half of them, so that with more immediate-mode accounts
        # than workers the others' ticks still run rather than expire in the queue.
        self._waiting = asyncio.Semaphore(max(1, tuning.tick_workers // 2))

    async def take(self, msg: NatsMessage) -> None:
        """Handle one tick message end to end (acknowledged when its sends are done)."""
        try:
            event = decode(msg.raw_message.headers, msg.raw_message.data)
            tick = event.data
            if not isinstance(tick, TickIssued):
                raise UndecodableEvent(f"expected a tick, got {event.type}")
            problem = tick_problem(tick)
            if problem:
                raise UndecodableEvent(problem)
        except (UndecodableEvent, ValidationError) as exc:
            await self.dead_letters.publish(
                [DeadLetter.from_msg(msg.raw_message, f"{self.channel}-ticks", str(exc))]
            )
            await msg.ack()
            return
        if self.clock.now() > tick.not_after:
            TICKS_SEEN.labels(self.channel, "expired").inc()
            await msg.ack()
            return
        if self.flight.draining:
            await msg.nack()  # another replica takes it
            return
        TICKS_SEEN.labels(self.channel, "taken").inc()
        keepalive = asyncio.create_task(self._keep_alive(msg))
        try:
            # Schedulers publish ticks a little ahead of their instant: hold it until then, so
            # nothing is claimed or sent before `not_before`.
            early = (tick.not_before - self.clock.now()).total_seconds()
            if early > 0:
                await self.clock.sleep(early)
            TICK_LAG.labels(self.channel).observe(
                max(0.0, (self.clock.now() - tick.scheduled_at).total_seconds())
            )
            await self.run(tick)
        finally:
            keepalive.cancel()
            await msg.ack()

    async def _keep_alive(self, msg: NatsMessage) -> None:
        spec = CONSUMERS_BY_NAME[f"{self.channel}-ticks"]
        while True:
            await self.clock.sleep(spec.ack_wait / 3)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def run(self, tick: TickIssued) -> int:
        """Release up to the tick's budget of messages; returns how many were attempted."""
        site_ids = [tick.site_id] if tick.scope == "site" and tick.site_id else list(tick.sites)
        sites = [s for s in (self.sites.get(i) for i in site_ids) if s is not None]
        if not sites:
            return 0
        try:
            await self.adapter.on_tick(tick, sites)
        except Exception:
            log.exception("tick side work failed", extra={"tick": tick.tick_id})
        release = Release(
            tick_id=tick.tick_id,
            scheduled_at=tick.scheduled_at,
            reason=tick.reason,
            manual=tick.manual,
            actor=None,
        )
        flight = self.flight
        start = max(self.clock.now(), tick.not_before)
        spacing = timedelta(seconds=tick.spacing_seconds)
        remaining = tick.budget
        index = 0
        attempted = 0
        skipped: list[Key] = []
        run = TickRun(tick)
        if spacing > timedelta(0) and not tick.manual and tick.scope == "site" and tick.site_id:
            run.pace = pace_key(tick.site_id)
            run.pacer = flight.pacer_for(tick.site_id)
        while remaining > 0 and not flight.draining:
            now = self.clock.now()
            if now > tick.not_after:
                break
            batch = await self.queue.claim(
                [s.site_id for s in sites],
                min(remaining, 200),
                now=now,
                lease=timedelta(seconds=self.tuning.lease_seconds),
                release=release,
                exclude=skipped,
            )
            if not batch:
                if await self._more_arrived(tick):
                    continue
                break
            flight.hold((c.key for c in batch), now)
            handled: set[Key] = set()
            try:
                launched, stop = await self.releaser.release_batch(
                    batch, now, start, spacing, index, skipped, handled, run
                )
            except BaseException:
                # Whatever failed (the database, a limiter under contention), the rest of the
                # batch must not stay leased for as long as this replica lives.
                with contextlib.suppress(Exception):
                    await self.queue.release_unsent([c for c in batch if c.key not in handled])
                raise
            finally:
                # Settled here (deferred, suppressed, released…) or never started: no longer
                # ours to keep alive. Launched sends let go in `Sender.attempt`.
                flight.let_go(c.key for c in batch if c.key not in run.launched)
            index += launched
            remaining -= launched
            attempted += launched
            if stop:
                remaining = 0
            # Claim the next batch while the tail of this one is still in flight (the provider
            # connections would otherwise idle between batches), but never hold more than about
            # two batches' worth of leases at once. Counted until their provider call ends,
            # not until their outcome is recorded: the recorder lingers to group its commits.
            while run.pace is None and len(run.calling) > self.tuning.parallel_sends:
                run.called.clear()
                await run.called.wait()
            run.tasks = {t for t in run.tasks if not t.done()}
        if run.tasks and run.pace is not None:
            # A spaced tick's sends take most of a cycle: the tick's worker (and its ack) does
            # not wait for them, or a replica's few tick workers would serve only as many
            # sites at a time. Each send is leased: after a crash it is reconciled, not lost.
            for task in run.tasks:
                task.add_done_callback(_log_failure)
            run.tasks.clear()
        elif run.tasks:
            await asyncio.gather(*run.tasks, return_exceptions=True)
            run.tasks.clear()
        self.relay.nudge()
        return attempted

    async def _more_arrived(self, tick: TickIssued) -> bool:
        """For an immediate-mode tick (an account's, valid for about a second): wait for intake
        to store more messages within the tick's window. True if some arrived.

        Without it, messages taken in just after the tick found the queue empty waited for the
        next tick, and a batch arriving in bursts went out in per-second steps.
        """
        left = (tick.not_after - self.clock.now()).total_seconds()
        if tick.scope != "account" or not 0 < left <= SHORT_TICK_SECONDS:
            return False
        if self._waiting.locked():
            return False  # the next tick takes what arrives; this worker serves other accounts
        async with self._waiting:
            return await self._wait_for_arrival(tick)

    async def _wait_for_arrival(self, tick: TickIssued) -> bool:
        wanted = set(tick.sites)
        while not self.flight.draining:
            left = (tick.not_after - self.clock.now()).total_seconds()
            if left <= 0:
                return False
            arrived = self.arrivals.next
            try:
                await self.clock.wait_for(arrived.event.wait(), left)
            except TimeoutError:
                return False
            if arrived.sites & wanted:
                return not self.flight.draining
        return False
