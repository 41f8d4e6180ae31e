"""The settings projection: rows and position in one transaction; the directory built from it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scheduler.adapters.clock import RealClock
from services.scheduler.adapters.issuing import JetStreamTicks
from services.scheduler.adapters.projection import SiteRow, SitesProjection, sites
from services.scheduler.handlers.directory import SiteDirectory
from services.scheduler.handlers.timer import TickTimer
from shared.bus import subjects
from shared.bus.topology import SETTINGS
from shared.db.engine import create_engine, session_factory
from shared.db.migrate import migrate, service_chain
from shared.db.projection import ProjectionRunner, load_position
from shared.events.envelope import make_event
from shared.events.schemas.settings import GroupCreated
from shared.eventstore import EventStore
from tests.integration.scheduler.support import GROUP, publish_site, settings, window

MIGRATIONS = Path(__file__).resolve().parents[3] / "services" / "scheduler" / "migrations"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    await migrate(engine, [service_chain("scheduler", MIGRATIONS)])
    yield session_factory(engine)
    await engine.dispose()


def directory(nc: Client) -> SiteDirectory:
    return SiteDirectory(TickTimer(JetStreamTicks(nc), RealClock()))


async def test_projection_keeps_each_sites_latest_settings_and_its_position(
    nc: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    group = make_event(
        GroupCreated(group_id=GROUP, name="Smiles", defaults={}), source="test", actor="t"
    )
    await EventStore(nc, SETTINGS).append(subjects.settings_group(GROUP), group)
    await publish_site(nc, "s-1", settings(), created=True)
    await publish_site(nc, "s-2", settings(), created=True)
    last_s1 = await publish_site(
        nc, "s-1", settings(sms={"every_minutes": 7, "sessions": [window("sat", "10:00", "12:00")]})
    )
    live = directory(nc)
    runner = ProjectionRunner(nc, db, SitesProjection(live.offer))
    await runner.catch_up()

    async with db() as session:
        rows = {r.site_id: r for r in (await session.execute(sa.select(sites))).all()}
        position = await load_position(session, "scheduler.sites")
    assert position == last_s1
    assert set(rows) == {"s-1", "s-2"}
    assert rows["s-1"].version == last_s1
    assert rows["s-1"].settings["sms"]["every_minutes"] == 7
    # The committed batch reached the directory and, through it, the timer.
    known = live.get("s-1")
    assert known is not None and known.version == last_s1
    assert ("site", "s-1", "sms") in live.timer.schedule_keys()

    # A restart (or another replica sharing the database) rebuilds it all from the table.
    rebuilt = directory(nc)
    assert await rebuilt.refresh(db) == 2
    assert rebuilt.timer.schedule_keys() == live.timer.schedule_keys()
    again = rebuilt.get("s-1")
    assert again is not None and again.settings == known.settings

    # Later rows (applied by whichever replica won the batch) are picked up by version.
    changed = await publish_site(nc, "s-2", settings(sms={"provider": {"kind": "none"}}))
    await runner.catch_up()
    assert await rebuilt.refresh(db) == 1
    s2 = rebuilt.get("s-2")
    assert s2 is not None and s2.version == changed
    assert ("site", "s-2", "sms") not in rebuilt.timer.schedule_keys()
    assert await rebuilt.refresh(db) == 0


def test_unusable_settings_give_no_ticks_and_do_not_stop_the_others(nc: Client) -> None:
    known = directory(nc)
    good = settings().model_dump(mode="json")
    applied = known.offer(
        [
            SiteRow("s-bad", GROUP, 1, {"profile": {"timezone": "Mars/Olympus_Mons"}}),
            SiteRow("s-good", GROUP, 2, good),
            SiteRow("s-good", GROUP, 1, {"stale": True}),  # older than what is known: ignored
        ]
    )
    assert applied == 2
    bad = known.get("s-bad")
    assert bad is not None and bad.settings is None
    assert [key[1] for key in known.timer.schedule_keys()] == ["s-good"]
