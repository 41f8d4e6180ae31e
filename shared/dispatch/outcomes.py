"""Group commit of `sent` outcomes: one SQL transaction for every send that finished meanwhile.

At the rates providers take (hundreds to thousands a second), one write transaction per message
makes every writer queue on the database's write lock and the ledger, not the provider, sets the
pace. `SentRecorder` gathers the `sent` outcomes that complete while a commit is under way and
writes them together: the same compare-and-set per message (only rows still `sending` under this
replica's lease change), the same `stagger.dispatch.sent` event with the same deterministic id.
A sender waits for its group's commit, so "ledger written after the provider call" still holds;
a crash before it leaves the rows `sending`, to be reconciled like any interrupted send.

A group is not committed the moment its first outcome arrives: the recorder waits up to
`linger` seconds for it to fill (to `full` outcomes). Each commit costs the gateway's one event
loop about a millisecond and a half of CPU whatever its size (greenlet, driver-thread round
trips, the ORM), so at a few hundred sends a second committing every five or so outcomes spent
more of the loop on the ledger than on the provider. The sender has already freed its send slot
when it waits here, so lingering costs the pace nothing; a crash while outcomes linger leaves
their rows `sending`, to be reconciled — the same as a crash during the commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from shared.dispatch import schema
from shared.dispatch.adapter import SendResult
from shared.dispatch.gathering import Gathering
from shared.dispatch.queue import Claimed, Key, MessageQueue
from shared.events.schemas.dispatch import MessageSent

MAX_GROUP = 500
LINGER_SECONDS = 0.05
FULL_GROUP = 64
COMMIT_ATTEMPTS = 5
log = logging.getLogger(__name__)


@dataclass
class _Sent:
    claimed: Claimed
    account: str
    result: SendResult
    done: asyncio.Future[bool]
    arrived: float


def _provider_answer(messages: sa.Table) -> sa.Update:
    """UPDATE of one sent message's account and provider reference (run per row)."""
    return (
        sa.update(messages)
        .where(
            messages.c.site_id == sa.bindparam("b_site"),
            messages.c.message_id == sa.bindparam("b_id"),
        )
        .values(
            account=sa.bindparam("b_account"),
            provider_message_id=sa.bindparam("b_reference"),
        )
    )


class SentRecorder:
    """Records `sent` outcomes of one queue in groups (run `run()` as a background task)."""

    def __init__(
        self,
        queue: MessageQueue,
        nudge: Callable[[], None],
        *,
        linger: float = LINGER_SECONDS,
        full: int = FULL_GROUP,
    ) -> None:
        self.queue = queue
        self._nudge = nudge
        self._pending: Gathering[_Sent] = Gathering(linger=linger, full=full, most=MAX_GROUP)
        self._wake = asyncio.Event()
        self.commits = 0
        self._provider_answer = _provider_answer(queue.t.messages)

    async def sent(self, claimed: Claimed, account: str, result: SendResult) -> bool:
        """Record one message as sent; False if its lease had been lost meanwhile."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        self._pending.add(_Sent(claimed, account, result, done, loop.time()))
        self._wake.set()
        return await done

    async def run(self) -> None:
        """Commit whatever has gathered, one group at a time."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                group = await self._pending.next_group()
                try:
                    recorded = await self._commit_patiently(group)
                except Exception as exc:
                    for item in group:
                        if not item.done.done():
                            item.done.set_exception(exc)
                    continue
                for item in group:
                    if not item.done.done():
                        item.done.set_result(item.claimed.key in recorded)
                self._nudge()

    async def _commit_patiently(self, group: list[_Sent]) -> set[Key]:
        """`_commit`, retried through short database trouble (a lock, a failover): these
        messages are already with the provider; a write given up on leaves them to be
        reconciled after their lease, which is slower and costs the provider a lookup."""
        delay = 0.1
        attempt = 1
        while True:
            try:
                return await self._commit(group)
            except Exception:
                if attempt == COMMIT_ATTEMPTS:
                    raise
                log.warning(
                    "recording sent messages failed; retrying",
                    exc_info=True,
                    extra={"messages": len(group), "attempt": attempt},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                attempt += 1

    async def _commit(self, group: list[_Sent]) -> set[Key]:
        q = self.queue
        m = q.t.messages
        now = datetime.now(UTC)
        by_id = {item.claimed.key: item for item in group}
        async with q.db() as session, session.begin():
            # One compare-and-set for the group; RETURNING names the rows that were still ours
            # (a lease taken over meanwhile is left to its new owner).
            updated = await session.execute(
                sa.update(m)
                .where(
                    sa.tuple_(m.c.site_id, m.c.message_id).in_(sorted(by_id)),
                    m.c.state == schema.SENDING,
                    m.c.lease_owner == q.owner,
                )
                .values(
                    state=schema.SENT,
                    sent_at=now,
                    finished_at=now,
                    lease_owner=None,
                    lease_until=None,
                    attempts=m.c.attempts + 1,
                )
                .returning(m.c.site_id, m.c.message_id)
            )
            ours = {(row[0], row[1]) for row in updated}
            if ours:
                # The per-message values in a second, fixed-shape statement run for each row.
                # (A CASE over the group made every group size a statement of its own, each
                # kept in SQLAlchemy's compiled cache with its thousand parameters: the
                # gateway's memory grew through a whole load test as new sizes turned up.)
                await session.execute(
                    self._provider_answer,
                    [
                        {
                            "b_site": i[0],
                            "b_id": i[1],
                            "b_account": by_id[i].account,
                            "b_reference": by_id[i].result.provider_message_id,
                        }
                        for i in ours
                    ],
                )
            for key in ours:
                item = by_id[key]
                c = item.claimed
                await q.event(
                    session,
                    c,
                    "terminal",
                    MessageSent(
                        **q.common(c.message_id, c.group_id, c.site_id),
                        account=item.account,
                        provider_message_id=item.result.provider_message_id,
                        sent_at=now,
                        attempts=c.attempts + 1,
                        segments=item.result.segments,
                        cost=item.result.cost,
                        released_by=c.release,
                        reconciled=False,
                    ),
                )
        self.commits += 1
        return ours
