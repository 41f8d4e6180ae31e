"""Every site's current settings, kept in memory from the SETTINGS stream (for gateways).

Each site event carries the site's complete effective settings, so the directory needs only the
last event per subject: it starts with a last-per-subject replay and then follows new events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import aclosing
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg

from shared.bus.topology import SETTINGS
from shared.domain.site_settings import SiteSettings
from shared.events.codec import UndecodableEvent, decode
from shared.events.schemas.settings import SiteCreated, SiteSettingsChanged
from shared.eventstore import replay_batches, stream_position

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Site:
    """A site's identity and effective settings at `version`."""

    group_id: str
    site_id: str
    settings: SiteSettings
    version: int


class SiteDirectory:
    """Site id → current settings, followed live."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._sites: dict[str, Site] = {}
        self.generation = 0
        """Bumped on every change: lets readers cache what they derive from the sites."""
        self.ready = asyncio.Event()
        self._changed = asyncio.Condition()

    def get(self, site_id: str) -> Site | None:
        """The site's current settings, or None if unknown."""
        return self._sites.get(site_id)

    def all(self) -> list[Site]:
        """Every known site."""
        return list(self._sites.values())

    def put(self, site: Site) -> None:
        """Record a site (tests and the follower)."""
        current = self._sites.get(site.site_id)
        if current is None or current.version < site.version:
            self._sites[site.site_id] = site
            self.generation += 1

    async def wait_for(self, site_id: str, patience: float = 5.0) -> Site | None:
        """The site, waiting briefly if its creation has not reached this replica yet."""
        site = self.get(site_id)
        if site is not None:
            return site
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(patience), self._changed:
                await self._changed.wait_for(lambda: site_id in self._sites)
        return self.get(site_id)

    async def _on_msg(self, msg: Msg) -> None:
        try:
            event = decode(msg.headers, msg.data)
        except UndecodableEvent as exc:
            log.warning("unreadable settings event skipped", extra={"error": str(exc)})
            return
        finally:
            sequence, pending = stream_position(msg)
            if pending == 0:
                self.ready.set()
        data = event.data
        if isinstance(data, SiteCreated | SiteSettingsChanged):
            # A snapshot that is not valid `SiteSettings` never decodes: skipped above.
            self.put(Site(data.group_id, data.site_id, data.settings, sequence))
            async with self._changed:
                self._changed.notify_all()

    async def follow(self) -> None:
        """Load the latest settings of every site, then follow changes (background task)."""
        js = self._nc.jetstream()
        info = await js.stream_info(SETTINGS)
        if info.state.messages == 0:
            self.ready.set()
        batches = replay_batches(self._nc, SETTINGS, follow=True, last_per_subject=True)
        async with aclosing(batches):
            async for batch in batches:
                for msg in batch:
                    await self._on_msg(msg)
