"""The directory of every site's settings in memory: what the timer plans from.

It is filled from the table at start, updated from each committed batch (`offer`, the fast
path) and, every `refresh_seconds`, from rows whose version is newer than any row it has read:
when replicas share a database, the replica whose compare-and-set loses never sees the commit
of the batch the other one applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scheduler.adapters import metrics
from services.scheduler.adapters.projection import SiteRow, rows_since
from services.scheduler.domain.planning import SitePlans, plan_site
from services.scheduler.handlers.timer import TickTimer
from shared.domain.site_settings import SiteSettings

log = logging.getLogger(__name__)


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
