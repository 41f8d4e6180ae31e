"""The scheduler's notion of time, injectable so tests never wait real minutes.

A `Clock` tells the time and sleeps until an instant or until someone wakes the sleeper (a
settings change). `RealClock` is the wall clock. `SimulatedClock` is a discrete-event clock:
time stands still until a test lets it run up to a limit, and then jumps straight from one
deadline to the next, so the real tick-publishing code covers a week in a moment.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """What the timer needs to know about time."""

    def now(self) -> datetime:
        """The current instant (aware, UTC)."""
        ...

    async def sleep_until(self, deadline: datetime | None, wake: asyncio.Event) -> None:
        """Return once `deadline` has come (None: never) or as soon as `wake` is set."""
        ...


class RealClock:
    """The system's wall clock."""

    def now(self) -> datetime:
        """Now, in UTC."""
        return datetime.now(UTC)

    async def sleep_until(self, deadline: datetime | None, wake: asyncio.Event) -> None:
        """Sleep until `deadline` or `wake`, whichever comes first."""
        if wake.is_set():
            return
        timeout = None
        if deadline is not None:
            timeout = (deadline - self.now()).total_seconds()
            if timeout <= 0:
                return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)


class SimulatedClock:
    """Time that moves only when a test lets it, jumping from deadline to deadline.

    `run_until(t)` allows time to reach `t` and returns once the sleeper (the timer) has done
    everything due up to `t` and is waiting for a later instant: every tick up to `t` has then
    been published and acknowledged.
    """

    def __init__(self, start: datetime) -> None:
        self._now = start.astimezone(UTC)
        self._limit = self._now
        self._moved = asyncio.Event()
        self._blocked_at: datetime | None = None
        self._idle = asyncio.Event()

    def now(self) -> datetime:
        """The simulated instant."""
        return self._now

    async def sleep_until(self, deadline: datetime | None, wake: asyncio.Event) -> None:
        """Jump to `deadline` if the limit allows; otherwise run up to the limit and wait."""
        while True:
            if wake.is_set():
                return
            if deadline is not None and deadline <= self._limit:
                self._now = max(self._now, deadline)
                return
            self._now = max(self._now, self._limit)
            moved = self._moved
            self._blocked_at = self._limit
            self._idle.set()
            try:
                waiters = {
                    asyncio.ensure_future(moved.wait()),
                    asyncio.ensure_future(wake.wait()),
                }
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
            finally:
                self._blocked_at = None
                self._idle.clear()

    def advance_to(self, instant: datetime) -> None:
        """Let time run up to `instant` (never backwards)."""
        instant = instant.astimezone(UTC)
        if instant <= self._limit:
            return
        self._limit = instant
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def run_until(self, instant: datetime) -> None:
        """Advance to `instant` and wait until the sleeper is idle there (callers bound it)."""
        self.advance_to(instant)
        target = max(self._limit, instant.astimezone(UTC))

        async def idle() -> None:
            while self._blocked_at != target:
                await self._idle.wait()
                if self._blocked_at != target:
                    # Blocked at an older limit an instant before we moved it: let it run.
                    await asyncio.sleep(0)

        await idle()
