"""Hard per-account limits shared by every gateway replica, kept in SQL.

Ticks already pace each site; these limits are the floor nobody goes below whatever the ticks
say (a send-now, several sites on one account): the provider account's maximum rate (GCRA,
compare-and-set on the account's row, so replicas share it without a lock service), a rolling
24-hour cap counted from the ledger, and a hold flag (e.g. no SMS credits).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.sql import insert_ignoring_duplicates
from shared.dispatch.queue import MessageQueue
from shared.domain.throttle import reserve

_UNKNOWN = object()
"""No cached theoretical arrival time for the account: read it from the row."""


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@dataclass
class _Waiting:
    """Reservations of one account (same interval and burst) asked for while another was under
    way, made as one when their turn comes: one compare-and-set for all of them.

    On a busy machine sends start late and take fresh slots one by one (`Sender.attempt`),
    each a database transaction: per-message work that grew just when the machine had the
    least to spare. Together they cost one, and each still gets its own slots of the one
    reservation, in the order asked.
    """

    counts: list[int]
    answers: list[asyncio.Future[list[datetime]]] = field(default_factory=list)

    async def join(self, count: int) -> list[datetime]:
        """Wait for this group's reservation and return `count` slots of it."""
        answer: asyncio.Future[list[datetime]] = asyncio.get_running_loop().create_future()
        self.counts.append(count)
        self.answers.append(answer)
        return await answer

    def share(self, slots: list[datetime]) -> list[datetime]:
        """Hand each joiner its slots; returns the first asker's."""
        first = self.counts[0]
        offset = first
        for count, answer in zip(self.counts[1:], self.answers, strict=True):
            if not answer.done():  # a joiner cancelled meanwhile leaves its slots unused
                answer.set_result(slots[offset : offset + count])
            offset += count
        return slots[:first]

    def fail(self, exc: BaseException) -> None:
        """The reservation failed (or its asker was cancelled): so does every joiner's."""
        error = exc if isinstance(exc, Exception) else RuntimeError("reservation abandoned")
        for answer in self.answers:
            if not answer.done():
                answer.set_exception(error)


class AccountLimits:
    """Rate, daily cap and hold state of provider accounts."""

    HELD_TTL = 1.0
    """How long a replica trusts its last reading of an account's hold flag (seconds)."""

    def __init__(
        self, db: async_sessionmaker[AsyncSession], table: sa.Table, queue: MessageQueue
    ) -> None:
        self.db = db
        self.t = table
        self.queue = queue
        self._ensured: set[str] = set()
        self._held: dict[str, tuple[float, str | None]] = {}
        self._reserving: dict[str, asyncio.Lock] = {}
        self._waiting: dict[tuple[str, timedelta, int], _Waiting] = {}
        self._tat: dict[str, datetime | None] = {}

    async def _ensure(self, account: str) -> None:
        if account in self._ensured:
            return
        async with self.db() as session, session.begin():
            await session.execute(
                insert_ignoring_duplicates(session, self.t, [{"account": account, "tat": None}])
            )
        self._ensured.add(account)

    async def reserve(
        self,
        account: str,
        count: int,
        interval: timedelta | None,
        *,
        burst: int = 1,
        now: datetime | None = None,
    ) -> list[datetime]:
        """Start instants for `count` sends that keep the account at its rate.

        One reservation at a time per account in this replica, from the account's last known
        theoretical arrival time: one compare-and-set round trip when no other replica moved
        it. Before, every concurrent send read the row and raced its neighbours for the
        update; the load test measured 0.3 s per reservation (8 s at worst) at 1,000 sites,
        which was most of the gateway's time.

        Reservations asked for while one of the account's is under way are made together,
        as one, once it is done (see `_Waiting`).
        """
        if interval is None or count <= 0:
            return [now or datetime.now(UTC)] * count
        if now is not None:
            async with self._reserving.setdefault(account, asyncio.Lock()):
                return await self._reserve_locked(account, count, interval, burst, now)
        key = (account, interval, burst)
        forming = self._waiting.get(key)
        if forming is not None:
            return await forming.join(count)
        group = self._waiting[key] = _Waiting([count])
        try:
            async with self._reserving.setdefault(account, asyncio.Lock()):
                # Closed: whoever asks from now on waits for the next reservation.
                if self._waiting.get(key) is group:
                    del self._waiting[key]
                slots = await self._reserve_locked(
                    account, sum(group.counts), interval, burst, None
                )
        except BaseException as exc:
            if self._waiting.get(key) is group:
                del self._waiting[key]
            group.fail(exc)
            raise
        return group.share(slots)

    async def _reserve_locked(
        self,
        account: str,
        count: int,
        interval: timedelta,
        burst: int,
        now: datetime | None,
    ) -> list[datetime]:
        await self._ensure(account)
        t = self.t
        known = self._tat.get(account, _UNKNOWN)
        for _ in range(100):
            # Taken after the lock: a stale `now` would grant slots in the past, a burst.
            at = now or datetime.now(UTC)
            if known is _UNKNOWN:
                async with self.db() as session:
                    known = _utc(
                        (
                            await session.execute(sa.select(t.c.tat).where(t.c.account == account))
                        ).scalar()
                    )
            tat = cast("datetime | None", known)
            granted = reserve(tat, at, count, interval, burst)
            async with self.db() as session, session.begin():
                condition = t.c.tat.is_(None) if tat is None else t.c.tat == tat
                result = await session.execute(
                    sa.update(t)
                    .where(t.c.account == account, condition)
                    .values(tat=granted.new_tat, updated_at=at)
                )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                self._tat[account] = granted.new_tat
                return list(granted.slots)
            # Another replica reserved since we last looked: read its value and retry.
            known = _UNKNOWN
            self._tat.pop(account, None)
        raise RuntimeError(f"could not reserve sends on account {account}: too much contention")

    async def not_before(self, key: str, at: datetime) -> None:
        """No reservation on `key` may start before `at` (a spaced send answered late pushes
        its site's next turn back, whichever replica takes it)."""
        await self._ensure(key)
        t = self.t
        async with self._reserving.setdefault(key, asyncio.Lock()):
            known = self._tat.get(key, _UNKNOWN)
            if known is not _UNKNOWN and known is not None and cast("datetime", known) >= at:
                return
            async with self.db() as session, session.begin():
                await session.execute(
                    sa.update(t)
                    .where(t.c.account == key, sa.or_(t.c.tat.is_(None), t.c.tat < at))
                    .values(tat=at, updated_at=datetime.now(UTC))
                )
            # Whatever the row holds now (ours, or a later one another replica wrote) is read
            # again by the next reservation.
            self._tat.pop(key, None)

    async def room_today(self, account: str, cap: int | None, now: datetime | None = None) -> int:
        """How many more sends the rolling 24-hour cap allows now (a large number if none)."""
        if cap is None:
            return 1_000_000_000
        now = now or datetime.now(UTC)
        used = await self.queue.sent_since(account, now - timedelta(hours=24))
        return max(0, cap - used)

    async def hold(self, account: str, reason: str, balance: float | None = None) -> bool:
        """Stop sending on an account (e.g. credits ran out). True if it was not held before."""
        self._held.pop(account, None)
        await self._ensure(account)
        async with self.db() as session, session.begin():
            result = await session.execute(
                sa.update(self.t)
                .where(self.t.c.account == account, self.t.c.held.is_(False))
                .values(
                    held=True, held_reason=reason, balance=balance, updated_at=datetime.now(UTC)
                )
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def release(self, account: str, balance: float | None = None) -> bool:
        """Resume sending on an account. True if it was held."""
        self._held.pop(account, None)
        await self._ensure(account)
        async with self.db() as session, session.begin():
            result = await session.execute(
                sa.update(self.t)
                .where(self.t.c.account == account, self.t.c.held.is_(True))
                .values(held=False, held_reason=None, balance=balance, updated_at=datetime.now(UTC))
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def held(self, account: str) -> str | None:
        """Why an account is held, or None.

        Read at most once a second per account: the engine asks before every batch, and a hold
        set by another replica may take that long to be seen here (its sends meanwhile are
        refused by the provider, which is what caused the hold, and go back to the queue).
        """
        now = time.monotonic()
        cached = self._held.get(account)
        if cached is not None and now - cached[0] < self.HELD_TTL:
            return cached[1]
        value = await self._read_held(account)
        self._held[account] = (now, value)
        return value

    async def _read_held(self, account: str) -> str | None:
        async with self.db() as session:
            row = (
                await session.execute(
                    sa.select(self.t.c.held, self.t.c.held_reason).where(
                        self.t.c.account == account
                    )
                )
            ).first()
        return (row.held_reason or "held") if row is not None and row.held else None
