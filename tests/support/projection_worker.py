"""A projection in its own process, so a test can SIGKILL it mid-way.

Usage: python -m tests.support.projection_worker NATS_URL DB_URL STREAM (follow|catch-up) [writer]

It counts, per event id, how many times the event was applied; a correct runner leaves every
count at exactly 1 however often it is killed and restarted. Each batch takes a little while
(a slow read model), so that a kill lands between and inside batches. With `writer`, on a
SQLite file, the batches are committed by the runner's writer process (`apply_sync`).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence

import nats
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.engine import create_engine, session_factory
from shared.db.migrate import migrate
from shared.db.projection import ProjectionRunner
from shared.events.envelope import Envelope
from tests.support.events import test_events

metadata = sa.MetaData()
applied = sa.Table(
    "test_applied",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("times", sa.Integer, nullable=False),
)


class CountingProjection:
    name = "test-counter"
    filter_subject = None

    def __init__(self, stream: str = "") -> None:
        self.stream = stream

    async def apply(self, session: AsyncSession, events: Sequence[Envelope]) -> None:
        for event in events:
            updated = await session.execute(
                sa.update(applied)
                .where(applied.c.event_id == event.id)
                .values(times=applied.c.times + 1)
            )
            if updated.rowcount == 0:
                await session.execute(sa.insert(applied).values(event_id=event.id, times=1))
        await asyncio.sleep(0.05)


class WriterCountingProjection(CountingProjection):
    """The same read model, also written on a synchronous connection: on a SQLite file the
    runner commits its batches in a writer process."""

    def apply_sync(self, conn: sa.Connection, events: Sequence[Envelope]) -> None:
        for event in events:
            updated = conn.execute(
                sa.update(applied)
                .where(applied.c.event_id == event.id)
                .values(times=applied.c.times + 1)
            )
            if updated.rowcount == 0:
                conn.execute(sa.insert(applied).values(event_id=event.id, times=1))
        time.sleep(0.05)


async def main(nats_url: str, db_url: str, stream: str, mode: str, kind: str = "") -> None:
    engine = create_engine(db_url)
    await migrate(engine, [])
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    nc = await nats.connect(nats_url)
    runner = ProjectionRunner(
        nc,
        session_factory(engine),
        (WriterCountingProjection if kind == "writer" else CountingProjection)(stream),
        batch_size=10,
        events=test_events,
    )
    if mode == "catch-up":
        await runner.catch_up()
    else:
        await runner.run()
    await nc.close()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
