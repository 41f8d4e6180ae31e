"""Loading and appending group and site aggregates in the SETTINGS event store."""

from __future__ import annotations

from services.config.domain.aggregates import (
    GroupState,
    SiteState,
    group_from_event,
    site_from_event,
)
from shared.bus import subjects
from shared.bus.topology import SETTINGS
from shared.events.envelope import EventData, make_event
from shared.eventstore import EventStore


class SettingsStore:
    """Aggregates of the SETTINGS stream, read from their last event (it carries a snapshot)."""

    def __init__(self, store: EventStore) -> None:
        if store.stream != SETTINGS:
            raise ValueError("SettingsStore needs the SETTINGS event store")
        self.events = store

    async def group(self, group_id: str) -> GroupState | None:
        """A group, or None if it does not exist."""
        last = await self.events.last(subjects.settings_group(group_id))
        return group_from_event(last) if last else None

    async def site(self, site_id: str) -> SiteState | None:
        """A site by id alone (site ids are unique across groups)."""
        last = await self.events.last(f"settings.*.{site_id}")
        return site_from_event(last) if last else None

    async def group_ids(self) -> list[str]:
        """Every group with a settings aggregate (read from the stream's subjects)."""
        return sorted({group for group, _ in await self._aggregates("settings.*.*")})

    async def site_ids(self, group_id: str) -> list[str]:
        """Every site of a group, from the stream alone (no read model needed: the CLI)."""
        found = await self._aggregates(f"settings.{group_id}.*")
        return sorted(site for _, site in found if site != subjects.GROUP_AGGREGATE)

    async def _aggregates(self, pattern: str) -> list[tuple[str, str]]:
        info = await self.events.js.stream_info(SETTINGS, subjects_filter=pattern)
        return [
            (parts[1], parts[2])
            for subject in info.state.subjects or {}
            if len(parts := subject.split(".")) == 3
        ]

    async def append_group(
        self,
        group_id: str,
        data: EventData,
        expected_version: int,
        *,
        actor: str,
        correlation_id: str | None = None,
    ) -> int:
        """Append a group event with optimistic concurrency; returns the new version."""
        event = make_event(
            data,
            source="config",
            actor=actor,
            subject=group_id,
            group_id=group_id,
            correlation_id=correlation_id,
        )
        return await self.events.append(subjects.settings_group(group_id), event, expected_version)

    async def append_site(
        self,
        group_id: str,
        site_id: str,
        data: EventData,
        expected_version: int,
        *,
        actor: str,
        correlation_id: str | None = None,
        event_id: str | None = None,
    ) -> int:
        """Append a site event with optimistic concurrency; returns the new version."""
        event = make_event(
            data,
            source="config",
            actor=actor,
            subject=site_id,
            group_id=group_id,
            site_id=site_id,
            correlation_id=correlation_id,
            event_id=event_id,
        )
        return await self.events.append(
            subjects.settings_site(group_id, site_id), event, expected_version
        )
