"""The wall clock the engine runs on in production (a simulation passes its own `Clock`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TypeVar

T = TypeVar("T")


class SystemClock:
    """`datetime.now(UTC)`, `asyncio.sleep` and `asyncio.wait_for`."""

    def now(self) -> datetime:
        """The current instant, in UTC."""
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`."""
        await asyncio.sleep(seconds)

    async def wait_for(self, awaitable: Awaitable[T], timeout: float | None) -> T:  # noqa: ASYNC109
        """`awaitable`'s result, or TimeoutError after `timeout` seconds."""
        return await asyncio.wait_for(awaitable, timeout)


SYSTEM_CLOCK = SystemClock()
