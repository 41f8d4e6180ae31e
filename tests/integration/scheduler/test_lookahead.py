"""Under a slow publish, the timer publishes far enough ahead that no tick is stored late.

The real timer on the wall clock, publishing to the real TICKS stream through a sink that
takes an extra 2 ms per tick (a slow or busy machine). 200 immediate-mode accounts tick on
the same whole seconds, so every second brings a burst that takes at least 0.4 s to store;
the least look-ahead is 0.05 s. With the measured rate the timer reaches further ahead and
each tick is stored before its instant; held to the least look-ahead, the same bursts are
stored late (the control, which shows the first test can fail).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client

from services.scheduler.adapters.clock import RealClock
from services.scheduler.adapters.issuing import JetStreamTicks, PublishResult
from services.scheduler.adapters.projection import SiteRow
from services.scheduler.handlers.directory import SiteDirectory
from services.scheduler.handlers.timer import TickTimer
from shared.bus.publisher import Outgoing
from tests.integration.scheduler.support import GROUP, TickReader, settings

ACCOUNTS = 200
PER_TICK = 0.002
FLOOR = timedelta(milliseconds=50)
WARM_UP = timedelta(seconds=3)  # the first bursts teach the timer the rate
WATCHED = timedelta(seconds=4)


class SlowSink:
    """The real sink, after an extra `per_tick` seconds for each tick of the batch."""

    def __init__(self, nc: Client, per_tick: float) -> None:
        self.inner = JetStreamTicks(nc)
        self.per_tick = per_tick

    async def publish(self, messages: Sequence[Outgoing]) -> list[PublishResult]:
        await asyncio.sleep(self.per_tick * len(messages))
        return await self.inner.publish(messages)


async def lags_under_slow_publish(
    nc: Client, ticks: TickReader, ceiling: timedelta
) -> list[timedelta]:
    """Stored − scheduled of every tick due in the watched seconds after the warm-up."""
    timer = TickTimer(
        SlowSink(nc, PER_TICK),
        RealClock(),
        publish_ahead=FLOOR,
        publish_ahead_max=ceiling,
        prepare_ahead=FLOOR + timedelta(seconds=1),
    )
    directory = SiteDirectory(timer)
    for i in range(ACCOUNTS):
        # Each site its own account: accounts tick on whole seconds, all at once.
        site = settings(sms={"mode": "immediate", "provider": {"account_id": f"a{i}"}})
        row = SiteRow(f"s-{i:03d}", GROUP, 1, site.model_dump(mode="json"))
        assert directory.offer([row]) == 1
    started = datetime.now(UTC)
    first, last = started + WARM_UP, started + WARM_UP + WATCHED
    task = asyncio.create_task(timer.run())
    try:
        await ticks.until(
            lambda got: sum(first <= t.tick.scheduled_at < last for t in got) >= 4 * ACCOUNTS,
            timeout=60,
            message="four watched seconds of account ticks",
        )
    finally:
        timer.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
    await ticks.poll()
    return [
        t.stored_at - t.tick.scheduled_at
        for t in ticks.ticks
        if first <= t.tick.scheduled_at < last
    ]


async def test_ticks_are_not_late_when_publishing_is_slow(nc: Client, ticks: TickReader) -> None:
    lags = await lags_under_slow_publish(nc, ticks, ceiling=timedelta(seconds=5))
    assert len(lags) >= 4 * ACCOUNTS
    assert max(lags) <= timedelta(0), f"latest tick stored {max(lags)} after its instant"


async def test_a_fixed_short_look_ahead_stores_the_same_bursts_late(
    nc: Client, ticks: TickReader
) -> None:
    lags = await lags_under_slow_publish(nc, ticks, ceiling=FLOOR)
    # Each burst takes at least ACCOUNTS × PER_TICK = 0.4 s but starts 0.05 s ahead.
    late = [lag for lag in lags if lag > timedelta(milliseconds=200)]
    assert len(late) >= ACCOUNTS, f"only {len(late)} ticks stored late"
