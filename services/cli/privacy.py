"""`stagger privacy …`: erase a recipient, apply retention (docs/privacy.md)."""

from __future__ import annotations

import asyncio
import json

import typer

from services.cli.connect import connect_nats
from shared.config import load_config

privacy = typer.Typer(help="Personal data: erasure and retention.", no_args_is_help=True)


@privacy.command("erase")
def erase(
    recipient: str = typer.Argument(..., help="Phone number (E.164) or email address."),
    group: str = typer.Option(..., help="The group whose data about the recipient goes."),
    actor: str = typer.Option("cli:operator", help="Who asked, for the erasure record."),
) -> None:
    """Delete the recipient's keys (their fields read "erased" everywhere) and record it."""
    from shared.privacy.codec import PersonalData
    from shared.privacy.erasure import erase_recipient
    from shared.secrets import SecretBox

    async def run() -> None:
        nc = await connect_nats()
        try:
            personal = PersonalData(nc, SecretBox.from_config(load_config()))
            done = await erase_recipient(nc, personal, group, recipient, actor)
        finally:
            await nc.close()
        typer.echo(json.dumps(done.as_json()))

    asyncio.run(run())


@privacy.command("retention")
def retention(
    at: str | None = typer.Option(
        None, help="Apply as of this ISO time instead of now (to check a policy ahead)."
    ),
) -> None:
    """Delete body and reply keys past every group's retention now (the config service also
    does this hourly)."""
    from datetime import UTC, datetime

    from shared.privacy.codec import PersonalData
    from shared.privacy.retention import apply_retention
    from shared.secrets import SecretBox

    when = datetime.fromisoformat(at) if at else datetime.now(UTC)
    if when.tzinfo is None:
        raise typer.BadParameter("--at needs a time zone (e.g. 2027-01-01T00:00:00Z)")

    async def run() -> None:
        nc = await connect_nats()
        try:
            personal = PersonalData(nc, SecretBox.from_config(load_config()))
            deleted = await apply_retention(nc, personal, when)
        finally:
            await nc.close()
        typer.echo(json.dumps(deleted))

    asyncio.run(run())


@privacy.command("reapply-erasures")
def reapply() -> None:
    """Delete again the keys of every recipient ever erased (after restoring the key bucket
    from a backup); the config service also does this hourly."""
    from shared.privacy.codec import PersonalData
    from shared.privacy.erasure import reapply_erasures
    from shared.secrets import SecretBox

    async def run() -> None:
        nc = await connect_nats()
        try:
            personal = PersonalData(nc, SecretBox.from_config(load_config()))
            found = await reapply_erasures(nc, personal)
        finally:
            await nc.close()
        typer.echo(json.dumps({"keys_deleted": found}))

    asyncio.run(run())
