"""Wait for a condition, never for a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_until(
    condition: Callable[[], Awaitable[T]] | Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition",
    describe: Callable[[], str] | None = None,
) -> T:
    """Poll `condition` until it returns something truthy; fail with `message` on timeout.

    `describe`, if given, is called on timeout to say what the state was instead.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            # A check that itself never returns would hang the test past its timeout.
            remaining = max(deadline - time.monotonic(), 1.0)
            try:
                result = await asyncio.wait_for(result, remaining)
            except TimeoutError:
                raise AssertionError(
                    f"checking {message} did not return within {remaining:.1f}s"
                ) from None
        if result:
            return result  # type: ignore[return-value]
        last = result
        if time.monotonic() > deadline:
            state = describe() if describe is not None else f"last: {last!r}"
            raise AssertionError(f"timed out after {timeout}s waiting for {message} ({state})")
        await asyncio.sleep(interval)
