"""Projections apply every event exactly once, through kills, restarts and replicas."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

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
from tests.support.projection_worker import WriterCountingProjection, applied
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
    """(events applied, most and fewest times one was applied)."""
    seen, most, least, _ = await counts_and_position(db_url)
    return seen, most, least


async def counts_and_position(db_url: str) -> tuple[int, int, int, int]:
    """`counts` and the stored position, read in one statement (one snapshot)."""
    engine = create_engine(db_url)
    stored = sa.text("SELECT position FROM projection_positions WHERE projection = 'test-counter'")
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        sa.func.count(),
                        sa.func.coalesce(sa.func.max(applied.c.times), 0),
                        sa.func.coalesce(sa.func.min(applied.c.times), 0),
                        stored.columns(sa.column("position", sa.Integer)).scalar_subquery(),
                    )
                )
            ).one()
            return int(row[0]), int(row[1]), int(row[2]), int(row[3] or 0)
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


def start_worker(
    nats_url: str, db_url: str, mode: str, kind: str = "async"
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            *("-m", "tests.support.projection_worker", nats_url, db_url, STREAM, mode, kind),
        ],
        cwd=os.getcwd(),
    )


async def test_projection_killed_midway_applies_each_event_exactly_once(
    nc: Client, nats_url: str, database_url: str
) -> None:
    await _kill_midway_then_catch_up(nc, nats_url, database_url, "async")


async def test_writer_process_projection_killed_midway_applies_each_event_exactly_once(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    # On a SQLite file the runner commits through its writer process: SIGKILL of the service
    # must not let that child commit a batch twice or apart from its position.
    await _kill_midway_then_catch_up(
        nc, nats_url, f"sqlite+aiosqlite:///{tmp_path / 'writer.db'}", "writer"
    )


async def _kill_midway_then_catch_up(
    nc: Client, nats_url: str, database_url: str, kind: str
) -> None:
    total = 600
    await fill_stream(nc, total)
    worker = start_worker(nats_url, database_url, "follow", kind)
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
    seen, _, _, stored = await counts_and_position(database_url)
    assert seen == stored, "rows and position commit together"

    restarted = start_worker(nats_url, database_url, "catch-up", kind)
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


async def test_two_runners_with_writer_processes_never_double_apply(
    nc: Client, tmp_path: Path
) -> None:
    # Each runner commits through its own writer process; the compare-and-set on the position,
    # run in those children, still lets only one of them apply each batch.
    total = 140
    await fill_stream(nc, total)
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'two-writers.db'}"
    engine = create_engine(db_url)
    await migrate(engine, [])
    async with engine.begin() as conn:
        await conn.run_sync(applied.metadata.create_all)
    sessions = session_factory(engine)
    runners = [
        ProjectionRunner(
            nc, sessions, WriterCountingProjection(STREAM), batch_size=3, events=test_events
        )
        for _ in range(2)
    ]
    tasks = [asyncio.create_task(runner.run()) for runner in runners]

    async def done_and_contended() -> bool:
        # Both started at position 0, so one of them loses a compare-and-set in its writer
        # (perhaps only at the end: the winner may hold SQLite's write lock until then).
        moved = sum(runner.stats.moved for runner in runners)
        return moved > 0 and await _at_least(db_url, total) is not None

    try:
        await wait_until(
            done_and_contended, timeout=60, message="the end reached, a runner refused once"
        )
    finally:
        for task in tasks:
            task.cancel()
        ended = await asyncio.gather(*tasks, return_exceptions=True)
        await engine.dispose()
    # Neither runner stopped on an error of its own (a writer failing, a lock timing out).
    assert all(isinstance(outcome, asyncio.CancelledError) for outcome in ended), ended
    assert await counts(db_url) == (total, 1, 1)
