"""Rows a gateway stored in clear before sealing existed are sealed in place, once; claims
then open them for the provider call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from nats.aio.client import Client

from shared.dispatch.tuning import EngineTuning
from shared.events.schemas.dispatch import Release
from shared.privacy.cipher import is_personal
from shared.privacy.codec import PersonalData
from shared.secrets import SecretBox, generate_key
from tests.integration.dispatch.harness import (
    SMS_TABLES,
    FakeAdapter,
    FakeProvider,
    engine_running,
    make_site,
    submit,
)
from tests.support.waiting import wait_until


async def _rows(service) -> list:  # type: ignore[no-untyped-def]
    m = SMS_TABLES.messages
    async with service.engine.queue.db() as session:
        return list(await session.execute(sa.select(m.c.recipient, m.c.payload)))


async def test_clear_rows_are_sealed_once_and_open_for_the_send(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    await make_site(nc, group="g1", site="s1")
    async with engine_running(
        nats_url, database_url, tmp_path, FakeAdapter(FakeProvider()), EngineTuning()
    ) as service:
        await submit(nc, "s1", 3)
        await wait_until(lambda: _count(service, 3), timeout=20, message="3 stored in clear")
        assert {r.recipient for r in await _rows(service)} == {
            "+447700900000",
            "+447700900001",
            "+447700900002",
        }
        queue = service.engine.queue
        personal = PersonalData(nc, SecretBox([generate_key().encode()]))
        queue.personal = personal
        assert await queue.seal_stored(chunk=2) == 3
        assert await queue.seal_stored() == 0  # nothing left in clear
        rows = await _rows(service)
        assert {r.recipient for r in rows} == {
            personal.tag("g1", f"+4477009{i:05d}") for i in range(3)
        }
        assert all(is_personal(r.payload["to"]) and is_personal(r.payload["body"]) for r in rows)
        assert all("hello" not in str(r.payload) for r in rows)
        now = datetime.now(UTC)
        claimed = await queue.claim(
            ["s1"],
            3,
            now=now,
            lease=timedelta(seconds=30),
            release=Release(tick_id="t", scheduled_at=now, reason="test"),
        )
        assert sorted(c.recipient for c in claimed) == [f"+4477009{i:05d}" for i in range(3)]
        assert sorted(c.message.body for c in claimed) == [f"hello {i}" for i in range(3)]


async def _count(service, n: int) -> bool:  # type: ignore[no-untyped-def]
    return len(await _rows(service)) >= n
