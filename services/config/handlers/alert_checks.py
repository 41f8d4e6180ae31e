"""The alert checks that no event triggers (the clock decides them): run together every
`CHECK_SECONDS`, waking the notifier when one raised or cleared an alert."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

log = logging.getLogger(__name__)

CHECK_SECONDS = 60.0


class AlertClock:
    """Runs each check every `every` seconds until cancelled (background task `run`)."""

    def __init__(
        self,
        checks: Sequence[Callable[[], Awaitable[bool]]],
        wake: asyncio.Event,
        every: float = CHECK_SECONDS,
    ) -> None:
        self.checks = checks
        self.wake = wake
        self.every = every

    async def run(self) -> None:
        """Check, wake the notifier on a change, sleep; a failing check is retried next time."""
        while True:
            for check in self.checks:
                try:
                    if await check():
                        self.wake.set()
                except Exception:
                    log.exception("alert check %s failed; retrying later", check)
            await asyncio.sleep(self.every)
