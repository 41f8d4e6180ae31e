"""Opt-outs: the group's email suppression list, followed live; a live opt-out also ends the
recipient's queued messages `suppressed` at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client

from shared.dispatch.ports import Queue
from shared.events.schemas.optouts import RecipientOptedOut
from shared.suppression import SuppressionList

log = logging.getLogger(__name__)


class OptOutFollower(SuppressionList):
    """The suppression list plus the queue follow-up (`Queue.suppress_recipient`). Opt-outs
    recorded while no replica ran are caught when each message is claimed (`EmailAdapter.check`).
    """

    def __init__(
        self,
        nc: Client,
        queue: Queue,
        nudge: Callable[[], None],
        tagger: Callable[[str, str], str] | None = None,
    ) -> None:
        super().__init__(nc, tagger)
        self._queue = queue
        self._nudge = nudge
        self._tasks: set[asyncio.Task[Any]] = set()

    def apply(self, data: object) -> None:
        super().apply(data)
        if self.ready.is_set() and isinstance(data, RecipientOptedOut) and data.channel == "email":
            task = asyncio.get_running_loop().create_task(self._suppress(data))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _suppress(self, data: RecipientOptedOut) -> None:
        try:
            done = await self._queue.suppress_recipient(
                data.group_id,
                self.key(data),
                reason=f"the recipient opted out ({data.how})",
                category=data.category,
            )
            if done:
                self._nudge()
        except Exception:
            log.exception("could not suppress queued messages after an opt-out")
