"""Messages sent per site and UTC hour (`config_sent_hours`), kept by the batch projection
from every `stagger.dispatch.sent`, for the dashboard's "sent today" in each site's zone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.config.adapters.batch_tables import sent_hours


async def count_sent(session: AsyncSession, hours: Counter[tuple[str, str, datetime]]) -> None:
    """Add sends to their (site, channel, UTC hour) counters."""
    dialect = session.get_bind().dialect.name
    module: Any = sqlite_insert if dialect == "sqlite" else pg_insert
    statement = module(sent_hours)
    statement = statement.on_conflict_do_update(
        index_elements=["site_id", "channel", "hour"],
        set_={"sent": sent_hours.c.sent + statement.excluded.sent},
    )
    await session.execute(
        statement,
        [{"site_id": s, "channel": c, "hour": h, "sent": n} for (s, c, h), n in hours.items()],
    )


async def sent_since(
    db: async_sessionmaker[AsyncSession], site_ids: Sequence[str], since: datetime
) -> dict[str, int]:
    """Messages sent per site from the hour holding `since` on (give a local midnight: zones
    are whole or half hours from UTC; a half-hour zone counts the half hour before it too)."""
    if not site_ids:
        return {}
    start = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    async with db() as session:
        rows = await session.execute(
            sa.select(sent_hours.c.site_id, sa.func.sum(sent_hours.c.sent))
            .where(sent_hours.c.site_id.in_(list(site_ids)), sent_hours.c.hour >= start)
            .group_by(sent_hours.c.site_id)
        )
        return {r[0]: int(r[1] or 0) for r in rows}
