"""A spaced send answered late pushes its site's next turn back in the shared limiter, so a
replica that takes the site's next tick keeps the spacing from that answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from shared.db.engine import create_engine, session_factory
from shared.dispatch import schema
from shared.dispatch.limits import AccountLimits
from shared.dispatch.queue import MessageQueue

SPACING = timedelta(seconds=10)


async def test_a_late_answer_moves_the_next_turn_and_an_earlier_one_never_does(
    database_url: str,
) -> None:
    metadata = sa.MetaData()
    t = schema.tables("pace", metadata)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        db = session_factory(engine)
        queue = MessageQueue(db, t, "sms", owner="me", source="test")
        one, other = AccountLimits(db, t.limiters, queue), AccountLimits(db, t.limiters, queue)
        t0 = datetime.now(UTC) + timedelta(minutes=5)
        (turn,) = await one.reserve("pace:site-a", 1, SPACING, now=t0)
        assert turn == t0
        answered = t0 + timedelta(seconds=3)
        await one.not_before("pace:site-a", answered + SPACING)
        # Another replica's reservation starts no earlier than the spacing after the answer.
        (next_turn,) = await other.reserve("pace:site-a", 1, SPACING, now=t0)
        assert next_turn == answered + SPACING
        # A push to an instant already passed by the reservations leaves them alone.
        await other.not_before("pace:site-a", t0)
        (after,) = await one.reserve("pace:site-a", 1, SPACING, now=t0)
        assert after == next_turn + SPACING
    finally:
        await engine.dispose()
