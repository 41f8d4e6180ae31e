"""`stagger admin create`: the first group admin of a real group, invited from the server."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from shared.config import StaggerConfig, load_config

if TYPE_CHECKING:
    from nats.aio.client import Client

    from services.config.staff.bootstrap import AdminInvitation

admin = typer.Typer(help="Staff accounts, from the server.", no_args_is_help=True)
CONFIG_MIGRATIONS = Path(__file__).resolve().parents[1] / "config" / "migrations"


async def ensure_group(
    nc: Client, settings: StaggerConfig, group_id: str, name: str, defaults: dict[str, object]
) -> bool:
    """Create the group unless it exists; True if it was created."""
    from services.config.adapters.settings_store import SettingsStore
    from services.config.handlers import ConfigHandlers, NotFound
    from shared.bus.topology import SETTINGS
    from shared.eventstore import EventStore
    from shared.secrets import SecretBox

    handlers = ConfigHandlers(
        nc,
        SettingsStore(EventStore(nc, SETTINGS)),
        SecretBox.from_config(settings),
        None,
        simulator_enabled=settings.sms_simulator_enabled,
    )
    try:
        await handlers.group(group_id)
        return False
    except NotFound:
        await handlers.create_group(group_id, name, defaults, actor="cli:operator")
        return True


async def invite_first_admin(
    nc: Client, settings: StaggerConfig, group_id: str, email: str, name: str = ""
) -> AdminInvitation:
    """Invite a group admin in the config database (brought up to date first)."""
    from services.config.staff.bootstrap import invite_admin
    from services.config.staff.store import StaffStore
    from shared.db.engine import create_engine, session_factory
    from shared.db.migrate import migrate, service_chain

    engine = create_engine(settings.service_database_url("config"))
    try:
        await migrate(engine, [service_chain("config", CONFIG_MIGRATIONS)])
        return await invite_admin(
            nc,
            StaffStore(session_factory(engine)),
            group_id=group_id,
            email=email,
            name=name,
            public_url=settings.public_url,
            lifetime=timedelta(hours=settings.staff_invitation_hours),
            actor="cli:operator",
        )
    finally:
        await engine.dispose()


@admin.command("create")
def admin_create(
    email: str = typer.Option(..., help="The admin's email address (their sign-in name)."),
    group: str = typer.Option(..., help="The group's id (lowercase letters, digits and '-')."),
    group_name: str = typer.Option(None, help="The group's name, if it is created now."),
    timezone: str = typer.Option("Europe/London", help="A new group's default time zone."),
    region: str = typer.Option("UK", help="A new group's default region."),
    name: str = typer.Option("", help="The admin's name."),
) -> None:
    """Make a group admin (creating the group if needed) and print their invitation link."""
    from services.cli.connect import connect_nats as _connect
    from services.config.staff.rules import StaffRuleError
    from shared.bus.subjects import InvalidToken
    from shared.bus.topology import ensure_streams
    from shared.domain.site_settings import SettingsError

    async def run() -> None:
        settings = load_config()
        nc = await _connect()
        try:
            await ensure_streams(nc.jetstream(), settings.stream_replicas)
            made = await ensure_group(
                nc,
                settings,
                group,
                group_name or group,
                {"profile": {"timezone": timezone, "region": region}},
            )
            invited = await invite_first_admin(nc, settings, group, email, name)
        except (StaffRuleError, SettingsError, InvalidToken, ValueError) as exc:
            typer.echo(f"not created: {exc}", err=True)
            raise typer.Exit(1) from exc
        finally:
            await nc.close()
        if made:
            typer.echo(f"group {group} created")
        typer.echo(f"{invited.user.email} invited as group admin of {group}.")
        typer.echo(f"One-time sign-in link (until {invited.expires_at:%Y-%m-%d %H:%M} UTC):")
        typer.echo(f"  {invited.link}")

    asyncio.run(run())
