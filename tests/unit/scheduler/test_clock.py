"""The injectable clocks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from services.scheduler.adapters.clock import RealClock, SimulatedClock

T0 = datetime(2025, 6, 2, 9, tzinfo=UTC)


async def test_simulated_time_jumps_to_deadlines_within_the_limit() -> None:
    clock = SimulatedClock(T0)
    woke: list[datetime] = []

    async def sleeper() -> None:
        wake = asyncio.Event()
        for minutes in (5, 10, 60):
            await clock.sleep_until(T0 + timedelta(minutes=minutes), wake)
            woke.append(clock.now())
        await clock.sleep_until(None, wake)  # idle for ever, as a timer with nothing to do

    task = asyncio.create_task(sleeper())
    await asyncio.wait_for(clock.run_until(T0 + timedelta(minutes=30)), 5)
    assert woke == [T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)]
    assert clock.now() == T0 + timedelta(minutes=30)  # time ran up to the limit
    await asyncio.wait_for(clock.run_until(T0 + timedelta(hours=2)), 5)
    assert woke[-1] == T0 + timedelta(minutes=60)
    assert clock.now() == T0 + timedelta(hours=2)
    task.cancel()


async def test_wake_interrupts_a_simulated_sleep_without_moving_time() -> None:
    clock = SimulatedClock(T0)
    wake = asyncio.Event()
    task = asyncio.create_task(clock.sleep_until(None, wake))
    await asyncio.sleep(0)
    assert not task.done()
    wake.set()
    await asyncio.wait_for(task, 5)
    assert clock.now() == T0


async def test_real_clock_returns_on_wake_or_past_deadline() -> None:
    clock = RealClock()
    wake = asyncio.Event()
    await asyncio.wait_for(clock.sleep_until(clock.now() - timedelta(seconds=1), wake), 5)
    task = asyncio.create_task(clock.sleep_until(clock.now() + timedelta(hours=1), wake))
    await asyncio.sleep(0)
    wake.set()
    await asyncio.wait_for(task, 5)
    assert clock.now().tzinfo is UTC
