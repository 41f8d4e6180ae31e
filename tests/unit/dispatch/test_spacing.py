"""A spaced tick's sends keep the spacing from the provider's answer to the previous send, on
a fake clock: a previous send that goes late, or a pause that ends early, cannot bring two
sends closer than the spacing at the provider."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from shared.dispatch.flight import Flight, TickRun
from shared.dispatch.tuning import EngineTuning
from tests.support.fakes.dispatch import FakeClock, tick

SPACING = timedelta(seconds=10)


async def test_a_send_answered_late_pushes_the_next_one_back() -> None:
    clock = FakeClock()
    run = TickRun(tick(clock, 2, spacing=SPACING.total_seconds()))
    t0 = clock.now()
    first_reported = asyncio.Event()

    async def pause(seconds: float) -> bool:
        # A sleep to an absolute deadline, during which the provider finally answers the
        # first send (its task was starved, its connection slow to open).
        deadline = clock.now() + timedelta(seconds=seconds)
        await first_reported.wait()
        clock.at = max(clock.at, deadline)
        return True

    async def first() -> None:
        assert await run.keep_spacing(SPACING, pause, clock)
        await asyncio.sleep(0)  # the second send is queued behind it now
        clock.at += timedelta(seconds=3)
        run.answered(clock.now())
        first_reported.set()
        run.call_ended(asyncio.current_task())

    async def second() -> datetime:
        assert await run.keep_spacing(SPACING, pause, clock)
        return clock.now()

    one = asyncio.create_task(first())
    await asyncio.sleep(0)
    started = await second()
    await one
    assert run.last_start == started
    assert started - (t0 + timedelta(seconds=3)) >= SPACING


async def test_a_pause_that_ends_early_is_waited_out() -> None:
    clock = FakeClock()
    run = TickRun(tick(clock, 2, spacing=SPACING.total_seconds()))
    pauses: list[float] = []

    async def pause(seconds: float) -> bool:
        # A timer that fires early (a coarse loop clock, a wall-clock step): a second short.
        pauses.append(seconds)
        clock.at += timedelta(seconds=seconds - 1 if seconds > 1 else seconds)
        return True

    assert await run.keep_spacing(SPACING, pause, clock)
    first = clock.now()
    run.answered(first)
    assert await run.keep_spacing(SPACING, pause, clock)
    assert clock.now() - first >= SPACING
    assert pauses == [10.0, 1.0], "the gap was checked again after the short pause"


async def test_a_drain_during_the_wait_stops_the_send() -> None:
    clock = FakeClock()
    run = TickRun(tick(clock, 2, spacing=SPACING.total_seconds()))

    async def draining(seconds: float) -> bool:
        return False

    assert await run.keep_spacing(SPACING, draining, clock)
    run.call_ended(asyncio.current_task())
    assert not await run.keep_spacing(SPACING, draining, clock)


async def test_a_sites_next_tick_keeps_the_spacing_from_the_last_send_of_the_previous_one() -> None:
    """Two ticks of one site share its pacer: the first send of the second tick waits for the
    spacing from the answer to the last send of the first, which went late."""
    clock = FakeClock()
    flight = Flight(EngineTuning(), clock)
    first_tick = TickRun(tick(clock, 1, spacing=SPACING.total_seconds()))
    first_tick.pacer = flight.pacer_for("site-a")
    second_tick = TickRun(tick(clock, 1, spacing=SPACING.total_seconds()))
    second_tick.pacer = flight.pacer_for("site-a")
    other_site = TickRun(tick(clock, 1, spacing=SPACING.total_seconds()))
    other_site.pacer = flight.pacer_for("site-b")

    async def pause(seconds: float) -> bool:
        clock.at += timedelta(seconds=seconds)
        return True

    assert await first_tick.keep_spacing(SPACING, pause, clock)
    clock.at += timedelta(seconds=2)  # the provider answers two seconds after the start
    answered = clock.now()
    first_tick.answered(answered)
    first_tick.call_ended(asyncio.current_task())
    assert await other_site.keep_spacing(SPACING, pause, clock)
    assert clock.now() == answered, "another site's pace is its own"
    assert await second_tick.keep_spacing(SPACING, pause, clock)
    assert clock.now() - answered >= SPACING
