"""What handler unit tests build on: the gateway's tables in a SQLite file, sites, fakes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.sms_gateway.adapters import tables
from services.sms_gateway.adapters.outbox import GatewayEvents
from shared.db.engine import create_engine, session_factory
from shared.domain.site_settings import SiteSettings
from shared.sites import Site, SiteDirectory

GROUP, SITE, ACCOUNT_ID = "g-1", "s-1", "sim-acct"


def site(
    site_id: str = SITE,
    group: str = GROUP,
    account_id: str = ACCOUNT_ID,
    **sms: Any,
) -> Site:
    """A site sending through the simulator account `account_id`."""
    settings: dict[str, Any] = {
        "sms": {
            "provider": {"kind": "simulator", "account_id": account_id},
            "sender_id": "+61491570999",
            **sms,
        }
    }
    return Site(group, site_id, SiteSettings.model_validate(settings), 1)


def directory(*sites: Site) -> SiteDirectory:
    """A site directory holding `sites` (no bus: filled here)."""
    found = SiteDirectory(None)  # type: ignore[arg-type]
    for s in sites:
        found.put(s)
    return found


@contextlib.asynccontextmanager
async def gateway_tables(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The SMS gateway's tables in a fresh SQLite file."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'sms.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(tables.metadata.create_all)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


class Wakeups:
    """Counts how often the event relay was woken."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def outbox(sessions: async_sessionmaker[AsyncSession], wake: Wakeups) -> GatewayEvents:
    """The gateway's transactional outbox over the SQLite tables."""
    return GatewayEvents(sessions, tables.DISPATCH.pending_events, wake)


async def event_types(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    """The types of the events waiting in the outbox, in the order they were written."""
    t = tables.DISPATCH.pending_events
    async with sessions() as session:
        rows = await session.execute(sa.select(t.c.headers).order_by(t.c.created_at))
        return [str(r.headers["ce-type"]).removeprefix("stagger.").rsplit(".v", 1)[0] for r in rows]
