"""The scheduler's projection of every site's settings into the `scheduler_sites` table.

`scheduler_sites` holds each site's latest effective settings snapshot and the stream sequence
of the event that carried it; `ProjectionRunner` moves the projection's position in the same
transaction. Group events are ignored: when a group's defaults change, every site that inherits
them receives its own `site.settings_changed` with the full new snapshot.

Each committed batch is handed to a callback (the site directory, `handlers/directory.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus import subjects
from shared.bus.topology import SETTINGS
from shared.events.envelope import Envelope
from shared.events.schemas.settings import SiteCreated, SiteSettingsChanged

log = logging.getLogger(__name__)

metadata = sa.MetaData()

sites = sa.Table(
    "scheduler_sites",
    metadata,
    sa.Column("site_id", sa.String(63), primary_key=True),
    sa.Column("group_id", sa.String(63), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False, index=True),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class SiteRow:
    """A site's effective settings as of stream sequence `version`."""

    site_id: str
    group_id: str
    version: int
    settings: dict[str, Any]


def site_rows(events: Iterable[Envelope]) -> list[SiteRow]:
    """The latest settings snapshot of each site in `events` (group events are skipped)."""
    latest: dict[str, SiteRow] = {}
    for event in events:
        data = event.data
        if isinstance(data, SiteCreated | SiteSettingsChanged) and event.sequence is not None:
            latest[data.site_id] = SiteRow(
                data.site_id,
                data.group_id,
                event.sequence,
                data.settings.model_dump(mode="json"),
            )
    return list(latest.values())


class SitesProjection:
    """Keeps `scheduler_sites` in step with SETTINGS; tells `on_committed` what changed."""

    name = "scheduler.sites"
    stream = SETTINGS
    filter_subject: str | None = None

    def __init__(self, on_committed: Callable[[list[SiteRow]], object] | None = None) -> None:
        self._on_committed = on_committed
        self.last_sequence = 0
        self._advanced = asyncio.Event()

    def refuse(self, event: Envelope) -> str | None:
        """A site event whose ids are not subject tokens cannot be a row (the runner
        dead-letters it; on PostgreSQL it would fail the whole batch)."""
        data = event.data
        if isinstance(data, SiteCreated | SiteSettingsChanged):
            try:
                subjects.check_token(data.group_id, "group id")
                subjects.check_token(data.site_id, "site id")
            except subjects.InvalidToken as exc:
                return str(exc)
        return None

    async def apply(self, session: AsyncSession, events: Sequence[Envelope]) -> None:
        """Upsert the latest snapshot of every site in the batch."""
        rows = site_rows(events)
        if not rows:
            return
        now = datetime.now(UTC)
        ids = [row.site_id for row in rows]
        existing = set(
            (await session.execute(sa.select(sites.c.site_id).where(sites.c.site_id.in_(ids))))
            .scalars()
            .all()
        )
        values = [
            {
                "b_site_id": row.site_id,
                "group_id": row.group_id,
                "version": row.version,
                "settings": row.settings,
                "updated_at": now,
            }
            for row in rows
        ]
        updates = [v for v in values if v["b_site_id"] in existing]
        inserts = [
            {**{k: v for k, v in value.items() if k != "b_site_id"}, "site_id": value["b_site_id"]}
            for value in values
            if value["b_site_id"] not in existing
        ]
        if updates:
            await session.execute(
                sa.update(sites)
                .where(sites.c.site_id == sa.bindparam("b_site_id"))
                .values(
                    group_id=sa.bindparam("group_id"),
                    version=sa.bindparam("version"),
                    settings=sa.bindparam("settings"),
                    updated_at=sa.bindparam("updated_at"),
                ),
                updates,
            )
        if inserts:
            await session.execute(sa.insert(sites), inserts)

    async def committed(self, events: Sequence[Envelope]) -> None:
        """After commit: hand the new snapshots to the directory (wakes the timer)."""
        newest = max((e.sequence or 0 for e in events), default=0)
        self.last_sequence = max(self.last_sequence, newest)
        self._advanced.set()
        rows = site_rows(events)
        if rows and self._on_committed is not None:
            self._on_committed(rows)

    async def reached(self, sequence: int) -> None:
        """Return once a batch holding stream sequence `sequence` (or later) has committed."""
        while self.last_sequence < sequence:
            self._advanced.clear()
            await self._advanced.wait()


async def rows_since(session: AsyncSession, version: int) -> list[SiteRow]:
    """Rows whose version is greater than `version`, oldest first."""
    result = await session.execute(
        sa.select(sites.c.site_id, sites.c.group_id, sites.c.version, sites.c.settings)
        .where(sites.c.version > version)
        .order_by(sites.c.version)
    )
    return [SiteRow(r.site_id, r.group_id, int(r.version), dict(r.settings)) for r in result]
