"""Composition root of the scheduler service: projection, directory, timer, send-now consumer.

Start-up order: load the settings table into the directory, follow SETTINGS from the stored
position, and only once the projection has caught up start the timer (ticks from a stale
table could open a session that was already removed) and the send-now consumer. Until then
`/readyz` says "not ready".
"""

from __future__ import annotations

import asyncio
import gc
import logging
from datetime import timedelta
from pathlib import Path

from services.scheduler.adapters.clock import Clock, RealClock
from services.scheduler.adapters.issuing import JetStreamTicks, TickSink
from services.scheduler.adapters.projection import SitesProjection
from services.scheduler.config import SchedulerConfig
from services.scheduler.entrypoints.send_now import SendNowConsumer
from services.scheduler.handlers.directory import SiteDirectory
from services.scheduler.handlers.timer import TickTimer
from shared.bus.topology import SETTINGS
from shared.db.projection import ProjectionRunner
from shared.runtime.service import BaseService, ServiceContext

log = logging.getLogger(__name__)


class SchedulerService(BaseService):
    """Turns every site's sessions and pace into ticks on the TICKS stream."""

    name = "scheduler"

    def __init__(self, settings: SchedulerConfig | None = None, clock: Clock | None = None) -> None:
        self.settings = settings or SchedulerConfig()
        self.clock: Clock = clock or RealClock()
        self.timer: TickTimer | None = None
        self.directory: SiteDirectory | None = None
        self.runner: ProjectionRunner | None = None
        self.send_now: SendNowConsumer | None = None
        self.projection: SitesProjection | None = None
        self._caught_up = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def migrations(self) -> Path:
        """The scheduler's projection table."""
        return Path(__file__).parent / "migrations"

    async def start(self, ctx: ServiceContext) -> None:
        """Wire the parts and start following SETTINGS; the timer starts once caught up."""
        cfg = self.settings
        sink: TickSink = JetStreamTicks(
            ctx.nc, timeout=cfg.publish_timeout_seconds, max_in_flight=cfg.publish_batch_size
        )
        self.timer = TickTimer(
            sink,
            self.clock,
            account_period=timedelta(seconds=cfg.account_tick_seconds),
            grace=timedelta(seconds=cfg.grace_seconds),
            prepare_ahead=timedelta(seconds=cfg.prepare_ahead_seconds),
            publish_ahead=timedelta(seconds=cfg.publish_ahead_seconds),
            publish_ahead_max=timedelta(seconds=cfg.publish_ahead_max_seconds),
            batch_size=cfg.publish_batch_size,
        )
        self.directory = SiteDirectory(self.timer)
        self.projection = SitesProjection(self.directory.offer)
        self.runner = ProjectionRunner(ctx.nc, ctx.db, self.projection)
        self.send_now = SendNowConsumer(ctx.nc, self.directory, sink, self.clock, cfg)
        ctx.spawn(self._run(ctx), "scheduler-start")

        timer, directory, send_now = self.timer, self.directory, self.send_now

        async def caught_up() -> bool:
            return self._caught_up.is_set() and directory.loaded and timer.running

        async def consuming() -> bool:
            return send_now.ready

        ctx.health.add_check("settings_projection", caught_up)
        ctx.health.add_check("send_now_consumer", consuming)

    async def _run(self, ctx: ServiceContext) -> None:
        timer, directory, runner, send_now = self.timer, self.directory, self.runner, self.send_now
        assert timer is not None and directory is not None
        assert runner is not None and send_now is not None
        loaded = await directory.refresh(ctx.db)
        log.info("site settings loaded", extra={"sites": loaded})
        target = (await ctx.js.stream_info(SETTINGS)).state.last_seq
        ctx.spawn(runner.run(), "settings-projection")
        ctx.spawn(
            directory.refresh_forever(ctx.db, self.settings.refresh_seconds), "settings-refresh"
        )
        await self._wait_caught_up(target)
        self._caught_up.set()
        # Rows another replica applied while this one caught up.
        await directory.refresh(ctx.db)
        ctx.health.details["sites"] = len(directory)
        # SchedulerConfig and plans live as long as the process: keep them out of the collector's
        # full passes, which otherwise pause the loop for hundreds of ms in a burst of ticks.
        gc.freeze()
        self._tasks.append(ctx.spawn(timer.run(), "tick-timer"))
        self._tasks.append(ctx.spawn(send_now.run(), "send-now"))
        log.info(
            "ticking", extra={"sites": len(directory), "schedules": len(timer.schedule_keys())}
        )

    async def _wait_caught_up(self, target: int) -> None:
        """Until the runner says it caught up, or a batch reaching `target` (the stream's last
        sequence at start) has committed, or the stored position was already there."""
        assert self.runner is not None and self.projection is not None
        waiters = {
            asyncio.ensure_future(self.runner.caught_up.wait()),
            asyncio.ensure_future(self.projection.reached(target)),
        }
        try:
            while not (self.runner.caught_up.is_set() or await self.runner.position() >= target):
                done, _ = await asyncio.wait(waiters, timeout=1.0, return_when="FIRST_COMPLETED")
                if done:
                    return
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def drain(self, ctx: ServiceContext) -> None:
        """Finish the tick batch in hand and the send-now request in hand."""
        if self.send_now is not None:
            self.send_now.stop()
        if self.timer is not None:
            self.timer.stop()
        if self._tasks:
            await asyncio.wait(self._tasks)


def definition() -> SchedulerService:
    """The service as the runtime runs it."""
    return SchedulerService()
