"""Receipts recorded in shared transactions (`ReceiptGroup`): each receipt settles its own
message once, with its own event; a receipt that cannot be recorded fails alone; and claims
over many sites (the queue-order index) still take the oldest messages first."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.sms_gateway.adapters.tables import DISPATCH
from shared.db.engine import create_engine, session_factory
from shared.dispatch import schema
from shared.dispatch.adapter import SendResult
from shared.dispatch.outcomes import SentRecorder
from shared.dispatch.pending_events import event_id
from shared.dispatch.queue import Claimed, Incoming, MessageQueue
from shared.dispatch.queue.receipts import ReceiptIn
from shared.dispatch.queue.sql import MANY_SITES
from shared.dispatch.receipt_group import ReceiptGroup
from shared.events.schemas.messages import MessageAccepted

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def _accepted(i: int, site: str, at: datetime | None = None) -> MessageAccepted:
    return MessageAccepted(
        message_id=f"rg-{i:04d}",
        group_id="rg-group",
        site_id=site,
        channel="sms",
        to=f"+4477009{i:05d}",
        body="hello",
        submitted_at=at or datetime.now(UTC),
    )


async def _queue(database_url: str) -> tuple[AsyncEngine, MessageQueue]:
    """The SMS gateway's own tables (with its queue-order index), empty."""
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(DISPATCH.messages.metadata.create_all)
    return engine, MessageQueue(session_factory(engine), DISPATCH, "sms", owner="me", source="t")


async def _sent(queue: MessageQueue, count: int) -> list[Claimed]:
    await queue.ingest([Incoming(_accepted(i, "rg-site"), "test") for i in range(count)])
    claimed = await queue.claim(["rg-site"], count)
    recorder = SentRecorder(queue, lambda: None, linger=0.0)
    running = asyncio.create_task(recorder.run())
    try:
        results = await asyncio.gather(
            *(recorder.sent(c, "acct", SendResult("sent", f"ref-{c.message_id}")) for c in claimed)
        )
    finally:
        running.cancel()
    assert results == [True] * count
    return claimed


def _receipt(message_id: str, *, delivered: bool = True) -> ReceiptIn:
    return ReceiptIn(
        delivered=delivered, occurred_at=datetime.now(UTC), message_id=message_id, accounts={"acct"}
    )


async def test_receipts_arriving_together_share_commits_and_each_settles_once(
    database_url: str,
) -> None:
    engine, queue = await _queue(database_url)
    try:
        claimed = await _sent(queue, 40)
        ids = [c.message_id for c in claimed]
        group = ReceiptGroup(queue, linger=0.05, full=16)
        receipts = [_receipt(i, delivered=n % 5 != 0) for n, i in enumerate(ids)]
        # A provider's retry of the first receipt, one for an unknown message, and one through
        # another tenant's account: none settles anything.
        extra = [
            _receipt(ids[0]),
            _receipt("rg-unknown"),
            ReceiptIn(
                delivered=True,
                occurred_at=datetime.now(UTC),
                message_id=ids[1],
                accounts={"someone-else"},
            ),
        ]
        results = await asyncio.wait_for(
            asyncio.gather(*(group.receipt(r) for r in [*receipts, *extra])), timeout=60
        )
        assert sorted(r for r in results if r is not None) == sorted(ids)
        assert results.count(None) == 3
        assert group.commits < len(receipts) / 4, f"{group.commits} commits for 43 receipts"

        m, events = DISPATCH.messages, DISPATCH.pending_events
        async with queue.db() as session:
            rows = dict(
                (r.message_id, r.receipt)
                for r in await session.execute(sa.select(m.c.message_id, m.c.receipt))
            )
            stored = {e for (e,) in await session.execute(sa.select(events.c.event_id))}
        assert rows == {i: ("delivered" if n % 5 else "undelivered") for n, i in enumerate(ids)}
        # Each message: queued, sent, and one receipt event (its id is deterministic).
        assert {event_id(f"rg-site\x1f{i}", "receipt") for i in ids} <= stored
        assert len(stored) == 3 * len(ids)
    finally:
        await engine.dispose()


class _Failing(MessageQueue):
    """A queue on which one message's receipt cannot be written."""

    bad = ""

    async def settle_receipt(self, session: AsyncSession, item: ReceiptIn) -> str | None:
        if item.message_id == self.bad:
            raise RuntimeError("this receipt cannot be written")
        return await super().settle_receipt(session, item)


async def test_a_receipt_that_cannot_be_written_fails_alone(database_url: str) -> None:
    engine, plain = await _queue(database_url)
    try:
        claimed = await _sent(plain, 6)
        queue = _Failing(plain.db, DISPATCH, "sms", owner="me", source="t")
        queue.bad = claimed[2].message_id
        group = ReceiptGroup(queue, linger=0.05, full=6)
        results = await asyncio.wait_for(
            asyncio.gather(
                *(group.receipt(_receipt(c.message_id)) for c in claimed),
                return_exceptions=True,
            ),
            timeout=60,
        )
        assert isinstance(results[2], RuntimeError)
        assert [r for n, r in enumerate(results) if n != 2] == [
            c.message_id for n, c in enumerate(claimed) if n != 2
        ]
        m = DISPATCH.messages
        async with plain.db() as session:
            unsettled = [
                i
                for (i,) in await session.execute(
                    sa.select(m.c.message_id).where(m.c.receipt.is_(None))
                )
            ]
        # Its provider delivers it again later; the group it was in was recorded all the same.
        assert unsettled == [queue.bad]
    finally:
        await engine.dispose()


async def test_claims_take_the_oldest_first_for_many_sites_and_for_few(database_url: str) -> None:
    engine, queue = await _queue(database_url)
    try:
        sites = [f"rg-site-{n:02d}" for n in range(MANY_SITES + 4)]
        # Interleaved ages: message i is i seconds old-to-new, on site i mod len(sites); a
        # site outside the claim has the very oldest messages.
        incoming = [
            Incoming(_accepted(i, sites[i % len(sites)], T0 + timedelta(seconds=i)), "test")
            for i in range(200)
        ]
        incoming += [
            Incoming(_accepted(900 + i, "rg-other", T0 - timedelta(hours=1)), "test")
            for i in range(50)
        ]
        await queue.ingest(incoming)
        taken: set[str] = set()
        for chosen in (sites, sites[:2]):
            expected = [
                f"rg-{i:04d}"
                for i in range(200)
                if sites[i % len(sites)] in chosen and f"rg-{i:04d}" not in taken
            ][:10]
            got = await queue.claim(chosen, 10)
            taken.update(c.message_id for c in got)
            assert [c.message_id for c in got] == expected
            assert {c.site_id for c in got} <= set(chosen)
            m = DISPATCH.messages
            async with queue.db() as session:
                sending = (
                    await session.execute(
                        sa.select(sa.func.count()).where(m.c.state == schema.SENDING)
                    )
                ).scalar_one()
            assert sending == len(got) * (1 if chosen is sites else 2)
    finally:
        await engine.dispose()
