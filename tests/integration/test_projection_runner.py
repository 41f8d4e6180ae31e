"""Projections apply every event exactly once, through kills, restarts and replicas."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

import sqlalchemy as sa
from nats.aio.client import Client
from nats.js.api import StreamConfig
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus.publisher import Outgoing, publisher_for
from shared.db.engine import create_engine, session_factory
from shared.db.migrate import migrate
from shared.db.projection import ProjectionRunner, load_position
from shared.events.codec import encode
from shared.events.envelope import Envelope, make_event
from tests.support.events import CounterIncremented, test_events
from tests.support.projection_worker import applied
from tests.support.waiting import wait_until

STREAM = "TESTPROJ"


async def fill_stream(nc: Client, count: int) -> None:
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=STREAM, subjects=["testproj.>"]))
    messages = []
    for i in range(count):
        headers, body = encode(make_event(CounterIncremented(amount=i), source="t", actor="t"))
        messages.append(Outgoing(f"testproj.agg{i % 7}", body, headers))
    await publisher_for(nc).publish_all(messages)


async def counts(db_url: str) -> tuple[int, int, int]:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        sa.func.count(),
                        sa.func.coalesce(sa.func.max(applied.c.times), 0),
                        sa.func.coalesce(sa.func.min(applied.c.times), 0),
                    )
                )
            ).one()
            return int(row[0]), int(row[1]), int(row[2])
    finally:
        await engine.dispose()


async def position(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as session:
            return await load_position(session, "test-counter")
    except Exception:
        return 0
    finally:
        await engine.dispose()


def start_worker(nats_url: str, db_url: str, mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.projection_worker", nats_url, db_url, STREAM, mode],
        cwd=os.getcwd(),
    )


async def test_projection_killed_midway_applies_each_event_exactly_once(
    nc: Client, nats_url: str, database_url: str
) -> None:
    total = 600
    await fill_stream(nc, total)
    worker = start_worker(nats_url, database_url, "follow")
    try:
        await wait_until(lambda: position(database_url), timeout=60, message="first batch")
        reached = await wait_until(
            lambda: _at_least(database_url, total // 3), timeout=60, message="a third applied"
        )
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert 0 < reached < total, "the kill must land mid-way"
    seen, _, _ = await counts(database_url)
    assert seen == await position(database_url), "rows and position commit together"

    restarted = start_worker(nats_url, database_url, "catch-up")
    assert await asyncio.to_thread(restarted.wait, 120) == 0
    seen, most, least = await counts(database_url)
    assert (seen, most, least) == (total, 1, 1)
    assert await position(database_url) == total


async def _at_least(db_url: str, n: int) -> int | None:
    current = await position(db_url)
    return current if current >= n else None


class ListProjection:
    name = "list"
    stream = STREAM
    filter_subject = "testproj.agg3"

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def apply(self, session: AsyncSession, events: Sequence[Envelope]) -> None:
        self.seen.extend(e.data.amount for e in events)  # type: ignore[attr-defined]


async def test_two_runners_on_one_database_never_double_apply(
    nc: Client, database_url: str
) -> None:
    await fill_stream(nc, 140)
    engine = create_engine(database_url)
    await migrate(engine, [])
    sessions = session_factory(engine)
    a, b = ListProjection(), ListProjection()
    runner_a = ProjectionRunner(nc, sessions, a, batch_size=3, events=test_events)
    runner_b = ProjectionRunner(nc, sessions, b, batch_size=3, events=test_events)
    tasks = [asyncio.create_task(runner_a.run()), asyncio.create_task(runner_b.run())]
    try:
        expected = [i for i in range(140) if i % 7 == 3]
        await wait_until(
            lambda: sorted(a.seen + b.seen) == expected,
            timeout=30,
            message="both runners together applied each event once",
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await engine.dispose()
    assert sorted(a.seen + b.seen) == expected
