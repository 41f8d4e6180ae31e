"""The scheduler's projection of every site's settings, and the in-memory directory it feeds.

`scheduler_sites` holds each site's latest effective settings snapshot and the stream sequence
of the event that carried it; `ProjectionRunner` moves the projection's position in the same
transaction. Group events are ignored: when a group's defaults change, every site that inherits
them receives its own `site.settings_changed` with the full new snapshot.

The directory is what the timer plans from. It is filled from the table at start, updated from
each committed batch (`committed`, the fast path) and, every `refresh_seconds`, from rows whose
version is newer than any row it has read: when replicas share a database, the replica whose
compare-and-set loses never sees `committed` for the batch the other one applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scheduler import metrics
from services.scheduler.planning import SitePlans, plan_site
from services.scheduler.timer import TickTimer
from shared.bus import subjects
from shared.bus.topology import SETTINGS
from shared.domain.site_settings import SiteSettings
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


@dataclass(frozen=True)
class KnownSite:
    """What the directory knows of one site (settings None: its snapshot did not validate)."""

    site_id: str
    group_id: str
    version: int
    settings: SiteSettings | None
    plans: SitePlans | None


class SiteDirectory:
    """Every site's settings in memory, newest version wins; each change replans the timer."""

    def __init__(self, timer: TickTimer) -> None:
        self.timer = timer
        self._sites: dict[str, KnownSite] = {}
        self.table_version = 0
        self.loaded = False

    def get(self, site_id: str) -> KnownSite | None:
        """The site as last seen, or None."""
        return self._sites.get(site_id)

    def __len__(self) -> int:
        return len(self._sites)

    def offer(self, rows: Iterable[SiteRow]) -> int:
        """Take snapshots newer than what is known; returns how many were applied."""
        applied = 0
        for row in rows:
            known = self._sites.get(row.site_id)
            if known is not None and known.version >= row.version:
                continue
            settings: SiteSettings | None
            plans: SitePlans | None
            try:
                settings = SiteSettings.model_validate(row.settings)
                plans = plan_site(row.site_id, row.group_id, settings)
            except (ValidationError, ValueError) as exc:
                log.error(
                    "site settings unusable; the site gets no ticks until they change",
                    extra={"site": row.site_id, "version": row.version, "error": str(exc)},
                )
                settings, plans = None, None
            self._sites[row.site_id] = KnownSite(
                row.site_id, row.group_id, row.version, settings, plans
            )
            self.timer.set_site(row.site_id, plans)
            applied += 1
        metrics.SITES.set(len(self._sites))
        return applied

    async def refresh(self, sessions: async_sessionmaker[AsyncSession]) -> int:
        """Apply rows written since the last read (by this replica or another one)."""
        async with sessions() as session:
            rows = await rows_since(session, self.table_version)
        if rows:
            self.table_version = max(self.table_version, rows[-1].version)
        applied = self.offer(rows)
        self.loaded = True
        return applied

    async def refresh_forever(
        self, sessions: async_sessionmaker[AsyncSession], every: float
    ) -> None:
        """`refresh` every `every` seconds until cancelled; errors are logged, not fatal."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh(sessions)
            except Exception:
                log.exception("re-reading site settings failed; retrying")
