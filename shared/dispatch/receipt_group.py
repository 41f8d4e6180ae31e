"""Group commit of delivery receipts: the receipts that arrive together share one transaction.

With receipts on, a provider calls back once per message, and each receipt was a transaction of
its own (on PostgreSQL with the pool's ping, six round trips; on SQLite a turn at the one write
lock). `ReceiptGroup` gathers the receipts that arrive while a commit is under way (or within
`linger` seconds of the first) and settles them in one transaction, each with the same
compare-and-set and the same event as alone.

Nothing is answered before its commit: a webhook waits for its group, so a crash (SIGKILL)
while receipts linger or commit leaves them unanswered, and the provider delivers them again
(receipts are idempotent: first wins). If a group's transaction fails, each of its receipts is
tried alone, so one that cannot be recorded fails only its own webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.dispatch.gathering import Gathering
from shared.dispatch.queue.receipts import ReceiptIn

LINGER_SECONDS = 0.02
FULL_GROUP = 64
MAX_GROUP = 200
log = logging.getLogger(__name__)


class ReceiptQueue(Protocol):
    """What a group needs of the queue: its sessions and the receipt step."""

    db: async_sessionmaker[AsyncSession]

    async def settle_receipt(self, session: AsyncSession, item: ReceiptIn) -> str | None: ...


@dataclass
class _Waiting:
    item: ReceiptIn
    done: asyncio.Future[str | None]
    arrived: float


def _order(waiting: _Waiting) -> tuple[str, str]:
    # The same order in every replica's groups: two groups locking the same rows then wait for
    # each other instead of deadlocking.
    return (waiting.item.message_id or "", waiting.item.provider_message_id or "")


class ReceiptGroup:
    """Records receipts of one queue in shared transactions; no background task to start:
    the first receipt of a quiet moment starts the committer, which ends when none wait."""

    def __init__(
        self, queue: ReceiptQueue, *, linger: float = LINGER_SECONDS, full: int = FULL_GROUP
    ) -> None:
        self.queue = queue
        self._pending: Gathering[_Waiting] = Gathering(linger=linger, full=full, most=MAX_GROUP)
        self._committer: asyncio.Task[None] | None = None
        self.commits = 0

    async def receipt(self, item: ReceiptIn) -> str | None:
        """Record one receipt once its group is committed; the message id it matched."""
        if not item.matchable:
            return None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str | None] = loop.create_future()
        self._pending.add(_Waiting(item, done, loop.time()))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._run())
        return await done

    async def close(self) -> None:
        """Wait for the receipts already taken to be committed."""
        if self._committer is not None:
            with contextlib.suppress(Exception):
                await self._committer

    async def _run(self) -> None:
        group: list[_Waiting] = []
        try:
            while self._pending:
                group = await self._pending.next_group()
                group.sort(key=_order)
                try:
                    results = await self._commit([w.item for w in group])
                except Exception:
                    log.warning(
                        "recording a group of receipts failed; trying each alone",
                        exc_info=True,
                        extra={"receipts": len(group)},
                    )
                    await self._one_by_one(group)
                    continue
                for waiting, result in zip(group, results, strict=True):
                    if not waiting.done.done():
                        waiting.done.set_result(result)
        finally:
            # Stopped (cancelled at shutdown): no webhook may wait for ever; unanswered, each
            # is delivered again by its provider.
            for waiting in [*group, *self._pending.take_all()]:
                if not waiting.done.done():
                    waiting.done.set_exception(RuntimeError("receipts not recorded: stopping"))

    async def _commit(self, items: list[ReceiptIn]) -> list[str | None]:
        queue = self.queue
        async with queue.db() as session, session.begin():
            results = [await queue.settle_receipt(session, item) for item in items]
        self.commits += 1
        return results

    async def _one_by_one(self, group: list[_Waiting]) -> None:
        for waiting in group:
            try:
                (result,) = await self._commit([waiting.item])
            except Exception as exc:
                if not waiting.done.done():
                    waiting.done.set_exception(exc)
                continue
            if not waiting.done.done():
                waiting.done.set_result(result)
