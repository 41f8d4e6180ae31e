"""The group commit of `sent` outcomes: each message keeps its own provider answer, a lease
lost meanwhile is left alone, and groups of every size share the same compiled statements (a
statement per group size kept the gateway's memory growing for a whole load test)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.engine import create_engine, session_factory
from shared.dispatch import schema
from shared.dispatch.adapter import SendResult
from shared.dispatch.outcomes import SentRecorder
from shared.dispatch.queue import Claimed, Incoming, MessageQueue
from shared.events.schemas.messages import MessageAccepted

SITE = "rec-site"


def _accepted(i: int) -> MessageAccepted:
    return MessageAccepted(
        message_id=f"rec-{i:04d}",
        group_id="rec-group",
        site_id=SITE,
        channel="sms",
        to=f"+4477009{i:05d}",
        body="hello",
        submitted_at=datetime.now(UTC),
    )


async def _recording(
    database_url: str, prefix: str, count: int
) -> tuple[AsyncEngine, MessageQueue, list[Claimed]]:
    """A queue on fresh `prefix` tables holding `count` messages, all claimed by "me"."""
    metadata = sa.MetaData()
    t = schema.tables(prefix, metadata)
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    queue = MessageQueue(session_factory(engine), t, "sms", owner="me", source="test")
    await queue.ingest([Incoming(_accepted(i), "test") for i in range(count)])
    claimed = await queue.claim([SITE], count)
    assert len(claimed) == count
    return engine, queue, claimed


async def test_groups_of_every_size_record_each_answer_with_the_same_statements(
    database_url: str,
) -> None:
    sizes = [1, 2, 3, 5, 8, 13, 21, 34, 55]
    total = sum(sizes) + 1
    engine, queue, claimed = await _recording(database_url, "rec", total)
    t = queue.t
    try:
        # One message's lease passes to another replica before its outcome is recorded.
        lost = claimed.pop()
        async with queue.db() as session, session.begin():
            await session.execute(
                sa.update(t.messages)
                .where(t.messages.c.message_id == lost.message_id)
                .values(lease_owner="someone-else")
            )

        recorder = SentRecorder(queue, lambda: None)
        running = asyncio.create_task(recorder.run())
        cache = engine.sync_engine._compiled_cache  # SQLAlchemy's per-engine statement cache
        assert cache is not None

        async def record(chunk: list[Claimed]) -> list[bool]:
            return await asyncio.gather(
                *(
                    recorder.sent(
                        c, f"acct-{c.message_id}", SendResult("sent", f"ref-{c.message_id}")
                    )
                    for c in chunk
                )
            )

        try:
            start = 0
            for n, size in enumerate(sizes):
                assert await record(claimed[start : start + size]) == [True] * size
                start += size
                if n == 1:
                    # Every statement of a group commit has been compiled once by now.
                    compiled = len(cache)
            assert len(cache) == compiled, "a group size compiled a statement of its own"
            assert recorder.commits >= len(sizes)
            assert await record([lost]) == [False]
        finally:
            running.cancel()

        m = t.messages
        async with queue.db() as session:
            rows = {
                r.message_id: r
                for r in await session.execute(
                    sa.select(m.c.message_id, m.c.state, m.c.account, m.c.provider_message_id)
                )
            }
            events = (
                await session.execute(sa.select(sa.func.count()).select_from(t.pending_events))
            ).scalar_one()
        for c in claimed:
            row = rows[c.message_id]
            assert (row.state, row.account, row.provider_message_id) == (
                schema.SENT,
                f"acct-{c.message_id}",
                f"ref-{c.message_id}",
            )
        untouched = rows[lost.message_id]
        assert (untouched.state, untouched.account, untouched.provider_message_id) == (
            schema.SENDING,
            None,
            None,
        )
        # One `queued` event per message at intake, one `sent` per recorded message.
        assert events == total + len(claimed)
    finally:
        await engine.dispose()


def _sent(recorder: SentRecorder, c: Claimed) -> Any:
    return recorder.sent(c, "acct", SendResult("sent", f"ref-{c.message_id}"))


async def test_a_full_group_commits_without_waiting_for_the_linger(database_url: str) -> None:
    engine, queue, claimed = await _recording(database_url, "full", 5)
    # A linger far beyond the test's patience: only reaching `full` can start the commit.
    recorder = SentRecorder(queue, lambda: None, linger=120.0, full=5)
    running = asyncio.create_task(recorder.run())
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(_sent(recorder, c) for c in claimed)), timeout=20
        )
        assert results == [True] * 5
        assert recorder.commits == 1
    finally:
        running.cancel()
        await engine.dispose()


async def test_outcomes_arriving_within_the_linger_share_one_commit(database_url: str) -> None:
    engine, queue, claimed = await _recording(database_url, "linger", 2)
    recorder = SentRecorder(queue, lambda: None, linger=2.0, full=64)
    running = asyncio.create_task(recorder.run())
    try:
        first = asyncio.create_task(_sent(recorder, claimed[0]))
        # The first outcome is waiting in its group (not committed) when the second comes.
        await asyncio.sleep(0.2)
        assert not first.done() and recorder.commits == 0
        second = asyncio.create_task(_sent(recorder, claimed[1]))
        assert await asyncio.wait_for(asyncio.gather(first, second), timeout=30) == [True, True]
        assert recorder.commits == 1
    finally:
        running.cancel()
        await engine.dispose()
