"""Sends that find the cached credit state expired at once share one read of the row."""

from __future__ import annotations

import asyncio
import time

import sqlalchemy as sa
from sqlalchemy import event

from services.sms_gateway.adapters import tables
from services.sms_gateway.adapters.credit_store import CreditStates
from shared.db.engine import create_engine, session_factory
from shared.domain.credit_state import CreditRules, Decision, Observation

RULES = CreditRules(threshold=10.0, auto_topup=False, smallest_payment=0.1)


async def nothing(session: object, decision: Decision) -> None:
    raise AssertionError("no change expected")


async def test_concurrent_balances_read_the_row_once_and_decide_alike(tmp_path: object) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/credits.db")
    selects = 0

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        nonlocal selects
        if statement.lstrip().upper().startswith("SELECT") and "sms_accounts" in statement:
            selects += 1

    try:
        async with engine.begin() as conn:
            await conn.run_sync(tables.accounts.metadata.create_all, tables=[tables.accounts])
        event.listen(engine.sync_engine, "before_cursor_execute", count)
        states = CreditStates(session_factory(engine))
        now = time.time()
        observation = Observation(500.0, now, now + 0.01)  # well above the threshold
        decisions = await asyncio.gather(
            *(states.decide("acct", "simulator", observation, RULES, nothing) for _ in range(16))
        )
        assert selects == 1, f"{selects} reads of the row for 16 balances"
        assert {d.state.low for d in decisions} == {False}
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(tables.accounts.c.account))).all()
        assert [r[0] for r in rows] == ["acct"]
    finally:
        await engine.dispose()
