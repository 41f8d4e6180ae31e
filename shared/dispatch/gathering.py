"""Items waiting for a group commit, and when a group is ready to go.

Both group commits of the gateways (sent outcomes, delivery receipts) hold a group back a few
milliseconds so it fills: each commit costs about the same whatever its size, so a commit per
item would spend the event loop on the database instead of the provider.
"""

from __future__ import annotations

import asyncio
from typing import Generic, Protocol, TypeVar


class Arrived(Protocol):
    """Something that waits, stamped with the loop time it arrived."""

    @property
    def arrived(self) -> float: ...


W = TypeVar("W", bound=Arrived)


class Gathering(Generic[W]):
    """What waits for the next commit. `next_group` returns once `full` items wait or the oldest
    has waited `linger` seconds, with at most `most` of them (the rest wait for the next)."""

    def __init__(self, *, linger: float, full: int, most: int) -> None:
        self.linger = linger
        self.full = full
        self.most = most
        self.waiting: list[W] = []
        self._filled = asyncio.Event()

    def __bool__(self) -> bool:
        return bool(self.waiting)

    def add(self, item: W) -> None:
        """One more item for a coming group."""
        self.waiting.append(item)
        if len(self.waiting) >= self.full:
            self._filled.set()

    async def next_group(self) -> list[W]:
        """The next group to commit (call only while something waits)."""
        await self._fill()
        group, self.waiting = self.waiting[: self.most], self.waiting[self.most :]
        return group

    def take_all(self) -> list[W]:
        """Everything still waiting, which leaves nothing (at shutdown)."""
        left, self.waiting = self.waiting, []
        return left

    async def _fill(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = self.waiting[0].arrived + self.linger
        while len(self.waiting) < self.full:
            left = deadline - loop.time()
            if left <= 0:
                return
            self._filled.clear()
            try:
                await asyncio.wait_for(self._filled.wait(), left)
            except TimeoutError:
                return
