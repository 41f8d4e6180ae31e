"""The config service's read model: groups and sites for listings, fed by SETTINGS.

Single-site reads go to the event store (the last event is authoritative and one direct get
away); listings come from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus import subjects
from shared.bus.topology import SETTINGS
from shared.events.envelope import Envelope
from shared.events.schemas.settings import (
    GroupCreated,
    GroupDefaultsChanged,
    SiteCreated,
    SiteSettingsChanged,
)

metadata = sa.MetaData()

groups = sa.Table(
    "config_groups",
    metadata,
    sa.Column("group_id", sa.String(63), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("defaults", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

sites = sa.Table(
    "config_sites",
    metadata,
    sa.Column("site_id", sa.String(63), primary_key=True),
    sa.Column("group_id", sa.String(63), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("region", sa.String(8), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("group_version", sa.BigInteger, nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("overrides", sa.JSON, nullable=False),
    sa.Column("warnings", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # The SMS provider account the site sends through (who else uses it: one group only).
    sa.Column("sms_provider", sa.String(16), nullable=True),
    sa.Column("sms_account_id", sa.String(100), nullable=True),
    sa.Index("ix_config_sites_sms_account", "sms_provider", "sms_account_id"),
)


def sms_account(settings: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(kind, account id) of a settings snapshot's SMS provider; (None, None) when off."""
    sms = settings.get("sms")
    provider = sms.get("provider") if isinstance(sms, Mapping) else None
    if not isinstance(provider, Mapping):
        return None, None
    kind, account_id = provider.get("kind"), provider.get("account_id")
    if not isinstance(kind, str) or kind == "none" or not isinstance(account_id, str):
        return None, None
    return kind, account_id


class SettingsProjection:
    """Keeps `config_groups` and `config_sites` in step with the SETTINGS stream."""

    name = "config.settings"
    stream = SETTINGS
    filter_subject: str | None = None

    def refuse(self, event: Envelope) -> str | None:
        """An event whose ids are not subject tokens cannot be a row (the runner dead-letters
        it instead of failing the batch; a snapshot that is not `SiteSettings` never decodes)."""
        data = event.data
        try:
            if isinstance(data, GroupCreated | GroupDefaultsChanged):
                subjects.check_token(data.group_id, "group id")
            elif isinstance(data, SiteCreated | SiteSettingsChanged):
                subjects.check_token(data.group_id, "group id")
                subjects.check_token(data.site_id, "site id")
        except subjects.InvalidToken as exc:
            return str(exc)
        return None

    async def apply(self, session: AsyncSession, events: Sequence[Envelope]) -> None:
        """Upsert each group and site from its latest event."""
        for event in events:
            data = event.data
            now = datetime.now(UTC)
            if isinstance(data, GroupCreated | GroupDefaultsChanged):
                values: dict[str, Any] = {
                    "version": event.sequence,
                    "defaults": data.defaults.model_dump(mode="json"),
                    "updated_at": now,
                }
                if isinstance(data, GroupCreated):
                    values["name"] = data.name
                await _upsert(
                    session, groups, "group_id", data.group_id, values, insert_defaults={"name": ""}
                )
            elif isinstance(data, SiteCreated | SiteSettingsChanged):
                snapshot = data.settings.model_dump(mode="json")
                profile = data.settings.profile
                kind, account_id = sms_account(snapshot)
                await _upsert(
                    session,
                    sites,
                    "site_id",
                    data.site_id,
                    {
                        "group_id": data.group_id,
                        "name": profile.name,
                        "timezone": profile.timezone,
                        "region": profile.region,
                        "version": event.sequence,
                        "group_version": data.group_version,
                        "settings": snapshot,
                        "overrides": data.overrides,
                        "warnings": [w.model_dump() for w in data.warnings],
                        "updated_at": now,
                        "sms_provider": kind,
                        "sms_account_id": account_id,
                    },
                )


async def _upsert(
    session: AsyncSession,
    table: sa.Table,
    key: str,
    key_value: str,
    values: dict[str, Any],
    insert_defaults: dict[str, Any] | None = None,
) -> None:
    result = await session.execute(
        sa.update(table).where(table.c[key] == key_value).values(**values)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        await session.execute(
            sa.insert(table).values(**{key: key_value, **(insert_defaults or {}), **values})
        )


async def list_sites(session: AsyncSession, group_id: str) -> list[dict[str, Any]]:
    """Every site of a group, by name."""
    rows = await session.execute(
        sa.select(
            sites.c.site_id,
            sites.c.name,
            sites.c.timezone,
            sites.c.region,
            sites.c.version,
            sites.c.warnings,
        )
        .where(sites.c.group_id == group_id)
        .order_by(sites.c.name, sites.c.site_id)
    )
    return [dict(r._mapping) for r in rows]


async def sites_of_group(session: AsyncSession, group_id: str) -> list[str]:
    """Ids of a group's sites."""
    rows = await session.execute(sa.select(sites.c.site_id).where(sites.c.group_id == group_id))
    return [r[0] for r in rows]


async def all_groups(session: AsyncSession) -> list[dict[str, Any]]:
    """Every group with its version."""
    rows = await session.execute(sa.select(groups.c.group_id, groups.c.name, groups.c.version))
    return [dict(r._mapping) for r in rows]


async def account_used_elsewhere(
    session: AsyncSession, kind: str, account_id: str, group_id: str
) -> bool:
    """True when a site of another group sends through this SMS provider account."""
    found = await session.execute(
        sa.select(sites.c.site_id)
        .where(
            sites.c.sms_provider == kind,
            sites.c.sms_account_id == account_id,
            sites.c.group_id != group_id,
        )
        .limit(1)
    )
    return found.first() is not None
