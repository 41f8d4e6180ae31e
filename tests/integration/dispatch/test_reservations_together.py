"""Reservations asked for while one of the account's is under way are made as one: fewer
database transactions, and still every slot one interval apart, none shared, in the account's
rate across replicas."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy import event

from shared.db.engine import create_engine, session_factory
from shared.dispatch import schema
from shared.dispatch.limits import AccountLimits
from shared.dispatch.queue import MessageQueue

INTERVAL = timedelta(milliseconds=10)
ASKERS = 60


async def test_concurrent_reservations_share_transactions_and_never_a_slot(
    database_url: str,
) -> None:
    metadata = sa.MetaData()
    t = schema.tables("together", metadata)
    engine = create_engine(database_url)
    updates = 0

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        nonlocal updates
        if statement.lstrip().upper().startswith("UPDATE") and "together" in statement:
            updates += 1

    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        event.listen(engine.sync_engine, "before_cursor_execute", count)
        db = session_factory(engine)
        queue = MessageQueue(db, t, "sms", owner="me", source="test")
        one, other = AccountLimits(db, t.limiters, queue), AccountLimits(db, t.limiters, queue)
        # Two replicas at once, each with many sends asking one or two slots at a time.
        answers = await asyncio.gather(
            *((one if i % 2 else other).reserve("acct", 1 + i % 2, INTERVAL) for i in range(ASKERS))
        )
        assert [len(a) for a in answers] == [1 + i % 2 for i in range(ASKERS)]
        slots = sorted(itertools.chain.from_iterable(answers))
        assert len(set(slots)) == len(slots), "a slot was handed out twice"
        assert all(b - a >= INTERVAL for a, b in itertools.pairwise(slots))
        # Far fewer compare-and-sets than askers (a retry after the other replica moved the
        # row counts too).
        assert updates < ASKERS / 3, f"{updates} updates for {ASKERS} reservations"
    finally:
        await engine.dispose()


async def test_a_failed_reservation_fails_those_waiting_on_it(database_url: str) -> None:
    metadata = sa.MetaData()
    t = schema.tables("failing", metadata)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        db = session_factory(engine)
        queue = MessageQueue(db, t, "sms", owner="me", source="test")
        limits = AccountLimits(db, t.limiters, queue)
        await limits.reserve("acct", 1, INTERVAL)  # the row exists
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: t.limiters.drop(c))  # every write fails from now
        results = await asyncio.gather(
            *(limits.reserve("acct", 1, INTERVAL) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, Exception) for r in results), results
        # Nothing is left waiting: the next ask fails on its own, it does not hang.
        async with asyncio.timeout(30):
            failed = await asyncio.gather(
                limits.reserve("acct", 1, INTERVAL), return_exceptions=True
            )
        assert isinstance(failed[0], Exception)
    finally:
        await engine.dispose()
