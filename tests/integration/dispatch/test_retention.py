"""Retention: finished messages leave the gateway's ledger after the retention period;
nothing still waiting or in flight does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from nats.aio.client import Client

from shared.dispatch import schema
from shared.dispatch.tuning import EngineTuning
from tests.integration.dispatch.harness import (
    SMS_TABLES,
    FakeAdapter,
    FakeProvider,
    engine_running,
    make_site,
    send_tick,
    submit,
)
from tests.support.waiting import wait_until


async def _rows(service) -> dict[str, str]:  # type: ignore[no-untyped-def]
    m = SMS_TABLES.messages
    async with service.engine.queue.db() as session:
        rows = await session.execute(sa.select(m.c.message_id, m.c.state))
        return {r[0]: r[1] for r in rows}


async def _states(service, ids: list[str], state: str) -> bool:  # type: ignore[no-untyped-def]
    rows = await _rows(service)
    return all(rows.get(i) == state for i in ids)


async def test_finished_messages_past_retention_are_purged_and_waiting_ones_kept(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    await make_site(nc, group="ret-g", site="ret-a")
    provider = FakeProvider()
    settings = EngineTuning(recovery_seconds=0.5, retention_days=30)
    async with engine_running(
        nats_url, database_url, tmp_path, FakeAdapter(provider), settings
    ) as svc:
        ids = await submit(nc, "ret-a", 4, prefix="ret")
        await wait_until(lambda: _count(svc, 4), timeout=30, message="4 queued")
        await send_tick(nc, "ret-a", budget=2)
        await wait_until(lambda: len(provider.sent) == 2, timeout=15, message="2 sent")
        sent = sorted(m for m, _ in provider.sent)
        waiting = sorted(set(ids) - set(sent))
        # Recorded as sent (the ledger write follows the provider call, grouped with others):
        # only then is `finished_at` the recorder's to set no more.
        await wait_until(
            lambda: _states(svc, sent, schema.SENT), timeout=15, message="2 recorded as sent"
        )
        m = SMS_TABLES.messages
        old = datetime.now(UTC) - timedelta(days=31)
        async with svc.engine.queue.db() as session, session.begin():
            # One sent message finished 31 days ago, the other just now; a waiting message
            # with an old timestamp must stay whatever its dates say.
            await session.execute(
                sa.update(m).where(m.c.message_id == sent[0]).values(finished_at=old)
            )
            await session.execute(
                sa.update(m)
                .where(m.c.message_id == waiting[0])
                .values(finished_at=old, queued_at=old, accepted_at=old)
            )

        assert await svc.engine.purge_finished() == 1
        rows = await _rows(svc)
        assert sent[0] not in rows
        assert rows[sent[1]] == schema.SENT
        assert {rows[w] for w in waiting} == {schema.QUEUED}
        assert await svc.engine.purge_finished() == 0

        # The purged message is out of the ledger only: the queue still sends the rest.
        await send_tick(nc, "ret-a", budget=5, at=None)
        await wait_until(lambda: len(provider.sent) == 4, timeout=15, message="rest sent")
    assert sorted(m for m, _ in provider.sent) == sorted(ids)


async def _count(service, n: int) -> bool:  # type: ignore[no-untyped-def]
    return len(await _rows(service)) >= n
