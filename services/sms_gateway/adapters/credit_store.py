"""The accounts' credit state (`shared.domain.credit_state`), shared by the gateway replicas.

The state is a row of `sms_accounts` that every replica reads and changes only by a
compare-and-set on its `version`: a replica computes the new state from the row it read and
writes it only if nobody changed the row meanwhile, else it reads again and decides again.
Whatever the change brings with it (the `low` event) is written in the same transaction, so
exactly one replica emits the `low` of a crossing, and exactly one claims its top-up before any
provider call is made.

Why a database row rather than a JetStream message id per (account, crossing): the replicas
already share the database, a crossing's number only exists once someone has decided it (the
row is where that decision lives), and the de-duplication window of a stream is a time window
while a crossing can last for days.

Reading the row for every balance would add a query to every send: the state read last is
reused for `CACHE_SECONDS` as long as an observation changes nothing under it (and one read
serves every send that finds it too old meanwhile); any change is decided on a fresh read. A
replica that reuses a state another replica has just changed only sees that change up to
`CACHE_SECONDS` late.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.sms_gateway.adapters import tables
from shared.db.sql import insert_ignoring_duplicates
from shared.domain.credit_state import CreditRules, CreditState, Decision, Observation, observe

CACHE_SECONDS = 1.0
ATTEMPTS = 50

OnChange = Callable[[AsyncSession, Decision], Awaitable[None]]


@dataclass(frozen=True)
class _Row:
    state: CreditState
    version: int
    read_at: float


class CreditStates:
    """Decide each balance observation against the shared state of its account."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._rows: dict[str, _Row] = {}
        self._reading: dict[str, asyncio.Future[_Row]] = {}

    async def decide(
        self,
        account: str,
        provider: str,
        observation: Observation,
        rules: CreditRules,
        on_change: OnChange,
    ) -> Decision:
        """Apply `observation` to the account's state; `on_change` runs inside the
        transaction of the change (when this replica's change wins)."""
        cached = self._rows.get(account)
        if cached is None or time.monotonic() - cached.read_at >= CACHE_SECONDS:
            cached = await self._read_once(account, provider)
        decision = observe(cached.state, observation, rules)
        if decision.state == cached.state:
            return decision
        for _ in range(ATTEMPTS):
            row = await self.read(account, provider)
            decision = observe(row.state, observation, rules)
            if decision.state == row.state:
                return decision
            if await self._write(account, row, decision, observation, on_change):
                return decision
        raise RuntimeError(f"could not change the credit state of {account}: too much contention")

    async def _read_once(self, account: str, provider: str) -> _Row:
        """`read`, shared by every send that finds the cached state too old while one read of
        the account is under way: the sends in flight (16 by default) all came back to an
        expired state at once and each read the row, a transaction per message."""
        pending = self._reading.get(account)
        if pending is None:
            pending = self._reading[account] = asyncio.ensure_future(self.read(account, provider))
            pending.add_done_callback(lambda _: self._reading.pop(account, None))
        # Shielded: a cancelled send must not cancel the read the others wait for.
        return await asyncio.shield(pending)

    async def read(self, account: str, provider: str) -> _Row:
        """The account's state as stored now (a new account starts not low)."""
        t = tables.accounts
        async with self._session() as session, session.begin():
            await session.execute(
                insert_ignoring_duplicates(
                    session, t, [{"account": account, "provider": provider, "low": False}]
                )
            )
            found = (
                await session.execute(
                    sa.select(
                        t.c.low, t.c.crossing, t.c.topup_crossing, t.c.as_of, t.c.version
                    ).where(t.c.account == account)
                )
            ).one()
        row = _Row(
            CreditState(found.low, found.crossing, found.topup_crossing, found.as_of),
            found.version,
            time.monotonic(),
        )
        self._rows[account] = row
        return row

    def _session(self) -> AsyncSession:
        return self._sessions()

    async def _write(
        self,
        account: str,
        row: _Row,
        decision: Decision,
        observation: Observation,
        on_change: OnChange,
    ) -> bool:
        t = tables.accounts
        new = decision.state
        async with self._session() as session, session.begin():
            result = await session.execute(
                sa.update(t)
                .where(t.c.account == account, t.c.version == row.version)
                .values(
                    low=new.low,
                    crossing=new.crossing,
                    topup_crossing=new.topup_crossing,
                    as_of=new.as_of,
                    version=row.version + 1,
                    balance=observation.balance,
                    updated_at=datetime.now(UTC),
                )
            )
            won = bool(result.rowcount)  # type: ignore[attr-defined]
            if won:
                await on_change(session, decision)
        if won:
            self._rows[account] = _Row(new, row.version + 1, time.monotonic())
        else:
            self._rows.pop(account, None)
        return won


async def remember(
    session: AsyncSession,
    account: str,
    provider: str,
    *,
    balance: float | None = None,
    unit: str | None = None,
) -> None:
    """Make sure the account has a row; store the balance when given."""
    t = tables.accounts
    await session.execute(
        insert_ignoring_duplicates(
            session, t, [{"account": account, "provider": provider, "low": False}]
        )
    )
    if balance is not None:
        values: dict[str, object] = {"balance": balance, "updated_at": datetime.now(UTC)}
        if unit is not None:
            values["unit"] = unit
        await session.execute(sa.update(t).where(t.c.account == account).values(**values))


class HoldRecords:
    """What a held account's refused message needed, and which accounts are held."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], limiters: sa.Table) -> None:
        self._sessions = sessions
        self._limiters = limiters

    async def record_hold(
        self, account: str, provider: str, balance: float | None, required: float | None
    ) -> None:
        """Store the balance and what the refused message needed."""
        async with self._sessions() as session, session.begin():
            await remember(session, account, provider, balance=balance)
            await session.execute(
                sa.update(tables.accounts)
                .where(tables.accounts.c.account == account)
                .values(required=required)
            )

    async def required(self, account: str) -> float | None:
        """What the refused message of a held account needed (None: unknown)."""
        async with self._sessions() as session:
            return (
                await session.execute(
                    sa.select(tables.accounts.c.required).where(
                        tables.accounts.c.account == account
                    )
                )
            ).scalar()

    async def held(self) -> Sequence[str]:
        """The accounts held now (by any replica)."""
        t = self._limiters
        async with self._sessions() as session:
            return (await session.execute(sa.select(t.c.account).where(t.c.held))).scalars().all()
