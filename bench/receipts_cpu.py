"""CPU per delivery receipt: one transaction each against `ReceiptGroup`, same messages.

`python -m bench.receipts_cpu URL [N]` (URL: a SQLAlchemy async URL, e.g.
`sqlite+aiosqlite:////tmp/r.db` or `postgresql+asyncpg://postgres@127.0.0.1:5432/scratch`;
its SMS tables are dropped and made anew). N messages over 250 sites are taken in, claimed and
recorded sent; then their receipts are recorded with 32 in flight, as webhooks arrive, once
each way, twice. Prints this process's CPU per receipt (`time.process_time`, the database
driver's threads included) and the rate. Not a `bench/results.json` entry.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime

from services.sms_gateway.adapters.tables import DISPATCH
from shared.db.engine import create_engine, session_factory
from shared.dispatch.adapter import SendResult
from shared.dispatch.outcomes import SentRecorder
from shared.dispatch.queue import Claimed, Incoming, MessageQueue
from shared.dispatch.queue.receipts import ReceiptIn
from shared.dispatch.receipt_group import ReceiptGroup
from shared.events.schemas.messages import MessageAccepted

IN_FLIGHT = 32
SITES = [f"site-{i}" for i in range(250)]


async def _sent(url: str, n: int, prefix: str) -> tuple[MessageQueue, list[str]]:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(DISPATCH.messages.metadata.drop_all)
        await conn.run_sync(DISPATCH.messages.metadata.create_all)
    queue = MessageQueue(session_factory(engine), DISPATCH, "sms", owner="me", source="bench")
    accepted = [
        MessageAccepted(
            message_id=f"{prefix}-{i}",
            group_id="g",
            site_id=SITES[i % len(SITES)],
            channel="sms",
            to=f"+6140000{i:04d}",
            body="hi",
            submitted_at=datetime.now(UTC),
        )
        for i in range(n)
    ]
    await queue.ingest([Incoming(m, "bench") for m in accepted])
    claimed: list[Claimed] = []
    while len(claimed) < n:
        claimed += await queue.claim(SITES, 200)
    recorder = SentRecorder(queue, lambda: None)
    task = asyncio.create_task(recorder.run())
    await asyncio.gather(
        *(recorder.sent(c, "acct", SendResult("sent", f"ref-{c.message_id}")) for c in claimed)
    )
    task.cancel()
    return queue, [c.message_id for c in claimed]


async def one_round(url: str, n: int, grouped: bool) -> str:
    """Record n receipts one way; the figures as a line."""
    queue, ids = await _sent(url, n, "g" if grouped else "s")
    group = ReceiptGroup(queue)
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one(message_id: str) -> str | None:
        async with slots:
            if grouped:
                item = ReceiptIn(
                    delivered=True,
                    occurred_at=datetime.now(UTC),
                    message_id=message_id,
                    accounts={"acct"},
                )
                return await group.receipt(item)
            return await queue.receipt(
                message_id=message_id,
                delivered=True,
                occurred_at=datetime.now(UTC),
                accounts={"acct"},
            )

    cpu, wall = time.process_time(), time.perf_counter()
    results = await asyncio.gather(*(one(m) for m in ids))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert all(r is not None for r in results), "a receipt matched nothing"
    commits = group.commits if grouped else n
    how = "grouped" if grouped else "one each"
    return (
        f"{how}: {n} receipts, CPU {1000 * cpu / n:.2f} ms/receipt, "
        f"{n / wall:.0f}/s, {commits} commits"
    )


async def main(url: str, n: int) -> None:
    for grouped in (False, True, False, True):
        print(await one_round(url, n, grouped), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1000))
