"""An event published twice (a producer retrying after a crash) is recorded once, and the chain
stays intact, whether the copy arrives in the same batch or a later one (SQLite's writer thread
and PostgreSQL's async path both)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from nats.aio.client import Client

from services.audit.adapters.trail import AuditProjection, records
from services.audit.composition import AuditService
from services.audit.handlers.queries import verify
from shared.bus import subjects
from shared.bus.topology import AUDIT, ensure_streams
from shared.db.engine import create_engine, session_factory
from shared.db.migrate import migrate, service_chain
from shared.db.projection import ProjectionRunner
from shared.events.codec import MSG_ID, encode
from shared.events.envelope import make_event
from shared.events.schemas.dispatch import MessageQueued
from tests.support.waiting import wait_until

MIGRATIONS = Path(AuditService().migrations())


def _queued(n: int) -> tuple[str, dict[str, str], bytes]:
    mid = f"{n:08d}-0000-7000-8000-00000000dup0"
    data = MessageQueued(
        message_id=mid,
        group_id=f"dup-g{n % 2}",
        site_id="dup-site",
        channel="sms",
        to="+447700900123",
        category="recall",
        submitted_at=datetime.now(UTC),
    )
    event = make_event(
        data,
        source="test",
        actor="service:test",
        subject=mid,
        group_id=f"dup-g{n % 2}",
        site_id="dup-site",
    )
    headers, body = encode(event)
    return event.id, headers, body


async def test_an_event_published_twice_is_recorded_once(nc: Client, database_url: str) -> None:
    js = nc.jetstream()
    await ensure_streams(js)
    events = [_queued(n) for n in range(12)]
    # Copies of events 2 (same batch of 4), 3 (next batch) and 5 (two batches later); a copy
    # carries another Nats-Msg-Id, as a retry after a crash would, so JetStream keeps it.
    order = [0, 1, 2, 2, 3, 4, 3, 5, 6, 7, 8, 5, 9, 10, 11]
    for copy, n in enumerate(order):
        _, headers, body = events[n]
        await js.publish(
            subjects.dispatch("sms", "dup-site"), body, headers={**headers, MSG_ID: f"c{copy}"}
        )
    await wait_until(
        lambda: _audit_holds(nc, len(order)), timeout=10, message="copies sourced into AUDIT"
    )
    engine = create_engine(database_url)
    try:
        await migrate(engine, [service_chain("audit", MIGRATIONS)])
        sessions = session_factory(engine)
        projection = AuditProjection()
        stats = await ProjectionRunner(nc, sessions, projection, batch_size=4).catch_up()
        assert stats.position == (await js.stream_info(AUDIT)).state.last_seq
        async with sessions() as session:
            stored = (await session.execute(sa.select(records.c.event_id))).scalars().all()
        assert sorted(stored) == sorted(event_id for event_id, _, _ in events)
        result = await verify(sessions)
        assert result.ok, result.problems
        assert result.records == len(events)
    finally:
        await engine.dispose()


async def _audit_holds(nc: Client, count: int) -> bool:
    return (await nc.jetstream().stream_info(AUDIT)).state.messages >= count
