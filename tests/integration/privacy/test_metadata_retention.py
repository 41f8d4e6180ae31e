"""Delivery-metadata retention: a group's finished messages past `metadata_days` lose the
provider's id and answers; their state and times stay, waiting messages are untouched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from nats.aio.client import Client

from shared.dispatch import schema
from shared.dispatch.tuning import EngineTuning
from shared.events.schemas.privacy import RetentionSet
from shared.privacy.retention import apply_metadata_retention
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


async def _rows(service) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    m = SMS_TABLES.messages
    async with service.engine.queue.db() as session:
        rows = await session.execute(
            sa.select(m.c.message_id, m.c.state, m.c.provider_message_id, m.c.sent_at)
        )
        return {r[0]: tuple(r[1:]) for r in rows}


async def _stored(service, n: int) -> bool:  # type: ignore[no-untyped-def]
    return len(await _rows(service)) >= n


async def _sent(service, n: int) -> bool:  # type: ignore[no-untyped-def]
    rows = await _rows(service)
    return sum(1 for r in rows.values() if r[0] == schema.SENT and r[1]) >= n


async def test_metadata_past_the_groups_retention_is_blanked_and_the_rest_kept(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    await make_site(nc, group="md-g", site="md-a")
    provider = FakeProvider()
    async with engine_running(
        nats_url, database_url, tmp_path, FakeAdapter(provider), EngineTuning()
    ) as svc:
        ids = await submit(nc, "md-a", 3, prefix="md")
        await wait_until(lambda: _stored(svc, 3), timeout=30, message="3 queued")
        await send_tick(nc, "md-a", budget=2)
        await wait_until(lambda: _sent(svc, 2), timeout=30, message="2 recorded as sent")
        queue = svc.engine.queue
        policies = {"md-g": RetentionSet(group_id="md-g", metadata_days=1)}
        # Today nothing finished a day ago; with the clock two days on, both sent ones did.
        assert await apply_metadata_retention(policies, queue, datetime.now(UTC)) == 0
        later = datetime.now(UTC) + timedelta(days=2)
        assert await apply_metadata_retention(policies, queue, later) == 2
        assert await apply_metadata_retention(policies, queue, later) == 0
        rows = await _rows(svc)
        sent = [i for i in ids if rows[i][0] == schema.SENT]
        assert len(sent) == 2
        assert all(rows[i][1] is None and rows[i][2] is not None for i in sent)
        other = {"md-g-other": RetentionSet(group_id="md-g-other", metadata_days=1)}
        assert await apply_metadata_retention(other, queue, later) == 0
