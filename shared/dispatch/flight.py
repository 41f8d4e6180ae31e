"""What one replica has in flight: the sends it launched, the leases it holds, its send slots,
its draining flag, and the notice that intake stored new messages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.dispatch.ports import Clock
from shared.dispatch.queue import Key
from shared.dispatch.tuning import SHORT_PAUSE_SECONDS, STALL, EngineTuning
from shared.events.schemas.ticks import TickIssued


@dataclass
class Arrival:
    """One intake's news: set once its messages are stored, with the sites they are for."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    sites: set[str] = field(default_factory=set)


class Arrivals:
    """Intake announces stored messages here; a short tick waiting for work wakes on it."""

    def __init__(self) -> None:
        self._next = Arrival()

    @property
    def next(self) -> Arrival:
        """The arrival that the next stored batch will set."""
        return self._next

    def announce(self, sites: Iterable[str]) -> None:
        """Messages for `sites` were stored."""
        arrived, self._next = self._next, Arrival()
        arrived.sites.update(sites)
        arrived.event.set()


@dataclass
class Pacer:
    """The spacing state of a site's spaced sends in this replica, shared by its ticks: a send
    of the next tick keeps the spacing from the last send of the previous one, which may
    still be waiting for its turn or for the provider's answer when that tick begins."""

    # When the previous send started, then when the provider had answered it, so that a
    # send that went late (a slow claim, a busy database, a slow connection) does not bring
    # the next one closer than the spacing.
    last_start: datetime | None = None
    order: asyncio.Lock = field(default_factory=asyncio.Lock)
    # The send that last passed `keep_spacing`, and a signal set once its provider call was
    # answered (`answered`) or it ended without one. The next send measures its spacing
    # from then, not from when the previous one was handed over.
    _previous: asyncio.Event | None = None
    _starting: dict[asyncio.Task[Any], asyncio.Event] = field(default_factory=dict)

    def answered(self, at: datetime | None) -> None:
        """The provider answered a send at `at`. It received the message at some instant
        before then, which can be well after the engine handed it over (a send from another
        process, a new connection, a starved loop), and `at` is the only instant after it
        that this replica knows: the next send keeps the spacing from there, so the provider
        never sees two sends closer than the spacing."""
        if at is not None and self.last_start is not None and at > self.last_start:
            self.last_start = at
        self.started(asyncio.current_task())

    def started(self, task: asyncio.Task[Any] | None) -> None:
        """`task`'s send was answered or ended without a call: the next may measure from it."""
        started = self._starting.pop(task, None) if task is not None else None
        if started is not None:
            started.set()

    async def keep_spacing(
        self, spacing: timedelta, pause: Callable[[float], Awaitable[bool]], clock: Clock
    ) -> bool:
        """Wait until `spacing` has passed since the provider answered the previous send;
        False if `pause` was cut short (the replica is draining).

        That instant is known only once the previous send reports it (`answered`): so first
        wait for the report, then re-check the gap after every pause until it has really
        elapsed, rather than sleeping once for a gap computed up front. The wait for the
        report ends one spacing after the previous send started: a send slower to answer than
        that (immediate mode at a high rate) is spaced from its start instead, so the account's
        rate is kept rather than falling to one send per round trip."""
        if spacing <= timedelta(0):
            return True
        async with self.order:
            previous = self._previous
            if previous is not None and not previous.is_set() and self.last_start is not None:
                # No timer at all once a whole spacing has passed since the previous start.
                bound = (self.last_start + spacing - clock.now()).total_seconds()
                if bound > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(previous.wait(), bound)
            while self.last_start is not None:
                gap = (self.last_start + spacing - clock.now()).total_seconds()
                if gap <= 0:
                    break
                if not await pause(gap):
                    return False
            self.last_start = clock.now()
            task = asyncio.current_task()
            self._previous = None
            if task is not None and not task.done():
                self._previous = self._starting[task] = asyncio.Event()
            return True


@dataclass
class TickRun:
    """The sends one tick launched, and the pacing state they share."""

    tick: TickIssued
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    launched: set[Key] = field(default_factory=set)
    # Its own for an account's or a send-now tick; a spaced site tick shares its site's, so
    # that consecutive ticks keep the spacing between them too.
    pacer: Pacer = field(default_factory=Pacer)
    # Launched sends whose provider call has not ended yet, and a signal each time one ends.
    calling: set[asyncio.Task[Any]] = field(default_factory=set)
    called: asyncio.Event = field(default_factory=asyncio.Event)
    # Launched sends still waiting for a send slot.
    slotless: set[asyncio.Task[Any]] = field(default_factory=set)
    # Spaced site ticks: the limiter key that keeps the site's spacing across consecutive
    # ticks and replicas (a cycle that ran late must not put its last send next to the
    # first send of the next cycle).
    pace: str | None = None

    @property
    def last_start(self) -> datetime | None:
        """When the previous spaced send started (or was answered, if later)."""
        return self.pacer.last_start

    def answered(self, at: datetime | None) -> None:
        """The provider answered a send of this tick at `at` (see `Pacer.answered`)."""
        self.pacer.answered(at)

    def call_ended(self, task: asyncio.Task[Any] | None) -> None:
        """`task`'s provider call is over, or it ended without one (idempotent)."""
        self.pacer.started(task)
        if task in self.calling:
            self.calling.discard(task)
            self.called.set()

    async def keep_spacing(
        self, spacing: timedelta, pause: Callable[[float], Awaitable[bool]], clock: Clock
    ) -> bool:
        """Wait until `spacing` has passed since the previous send (see `Pacer.keep_spacing`)."""
        return await self.pacer.keep_spacing(spacing, pause, clock)


class Flight:
    """This replica's sends in flight, send slots, held leases and draining state."""

    def __init__(self, tuning: EngineTuning, clock: Clock) -> None:
        self.tuning = tuning
        self.clock = clock
        self.draining = False
        self._drain_started = asyncio.Event()
        # Messages this replica claimed and is still working on: only their leases are renewed.
        # A row whose work ended without a terminal write (a crash of the task, a database
        # error) must not be kept alive for as long as the process lives: its lease runs out
        # and recovery reconciles it with the provider.
        self.held: set[Key] = set()
        # When each held lease was last known to run a full lease from (the claim's or the
        # last complete renewal's start): a send whose lease may have run out meanwhile (a
        # starved replica) confirms it in the ledger before reaching the provider.
        self.leased: dict[Key, datetime] = {}
        self.inflight: set[asyncio.Task[Any]] = set()
        self.send_slots = asyncio.Semaphore(tuning.parallel_sends)
        # How long a provider call takes lately (moving average, seconds): how far ahead
        # limiter slots may be reserved before they would go stale.
        self.send_seconds: float | None = None
        # Sends started but not yet recorded, per account: the daily cap counts them too,
        # or a batch claimed at once would pass the cap check before any of it is recorded.
        # A lock per account makes "read the count, check, add one" atomic against the
        # subtraction after a send is recorded (a read that began before that commit is stale).
        self.unrecorded: dict[str, int] = {}
        self.cap_locks: dict[str, asyncio.Lock] = {}
        # Each site's spacing state, kept from one of its spaced ticks to the next.
        self.pacers: dict[str, Pacer] = {}

    def pacer_for(self, site_id: str) -> Pacer:
        """The spacing state `site_id`'s spaced ticks share in this replica."""
        return self.pacers.setdefault(site_id, Pacer())

    def hold(self, keys: Iterable[Key], leased_at: datetime) -> None:
        """This replica works on `keys`, leased from `leased_at` on."""
        for key in keys:
            self.held.add(key)
            self.leased[key] = leased_at

    def let_go(self, keys: Iterable[Key]) -> None:
        """No longer working on `keys`: their leases are not renewed any more."""
        for key in keys:
            self.held.discard(key)
            self.leased.pop(key, None)

    def renewed(self, keys: Iterable[Key], at: datetime) -> None:
        """A renewal that began at `at` kept every one of `keys`."""
        for key in keys:
            if key in self.held:
                self.leased[key] = at

    def lease_surely_held(self, key: Key, now: datetime, lease: timedelta) -> bool:
        """Whether `key`'s lease certainly has at least half of it left (no other replica can
        have taken it over), judged from what this replica last wrote."""
        at = self.leased.get(key)
        return at is not None and now - at < lease / 2

    def start_draining(self) -> None:
        """Stop starting sends (waits in progress are cut short)."""
        self.draining = True
        self._drain_started.set()

    async def settled(self) -> None:
        """Until no send is in flight, including a spaced tick's sends that outlive the tick's
        handling (a simulated-time driver waits for them before moving its clock)."""
        while self.inflight:
            await asyncio.gather(*list(self.inflight), return_exceptions=True)

    async def pause(self, seconds: float) -> bool:
        """Sleep up to `seconds`; False if draining started first (cuts a wait for a slot short)."""
        if self.draining:
            return False
        if seconds <= SHORT_PAUSE_SECONDS:
            # Immediate mode spaces sends a millisecond or so apart: a task and a timer per
            # send to watch for a drain that would cut a millisecond short cost more CPU
            # than the sends' own bookkeeping.
            await self.clock.sleep(seconds)
            return not self.draining
        with contextlib.suppress(TimeoutError):
            await self.clock.wait_for(self._drain_started.wait(), seconds)
            return False
        return True

    def track(self, task: asyncio.Task[Any]) -> None:
        """Count `task` in flight until it ends."""
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)

    def time_send(self, seconds: float) -> None:
        """A provider call took `seconds` (feeds the moving average)."""
        previous = self.send_seconds
        self.send_seconds = seconds if previous is None else previous + 0.1 * (seconds - previous)

    def soon_free(self, waiting: int, run: TickRun) -> int:
        """How many more of `waiting` sends may be launched ahead of a free send slot: as many
        as should get one within half of STALL, judging by how long provider calls take lately,
        less those already launched ahead (none until a call has been timed)."""
        if waiting <= 0 or self.send_seconds is None:
            return 0
        parallel = self.tuning.parallel_sends
        expected = parallel * (STALL.total_seconds() / 2) / max(self.send_seconds, 1e-4)
        return max(0, min(waiting, int(expected), 2 * parallel) - len(run.slotless))
