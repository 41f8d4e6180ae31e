"""`stagger privacy …`: erase a recipient, apply retention, seal old events (docs/privacy.md)."""

from __future__ import annotations

import asyncio
import json

import typer

from services.cli.connect import connect_nats
from shared.config import load_config

privacy = typer.Typer(
    help="Personal data: erasure, retention, sealing old events.", no_args_is_help=True
)


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
            personal = await PersonalData(nc, SecretBox.from_config(load_config())).ready()
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
            personal = await PersonalData(nc, SecretBox.from_config(load_config())).ready()
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
            personal = await PersonalData(nc, SecretBox.from_config(load_config())).ready()
            found = await reapply_erasures(nc, personal)
        finally:
            await nc.close()
        typer.echo(json.dumps({"keys_deleted": found}))

    asyncio.run(run())


GATEWAYS = ("sms_gateway", "email_gateway")


@privacy.command("seal-stored")
def seal_stored(
    service: list[str] = typer.Option(
        list(GATEWAYS), "--service", help="A gateway whose ledger to seal (repeatable)."
    ),
) -> None:
    """Seal the gateways' ledger rows stored in clear before personal fields were sealed
    (each gateway also does it once at start); prints, per gateway, how many rows were sealed
    and how many still hold an address (0 once done)."""
    import sqlalchemy as sa

    from services.email_gateway.adapters import tables as email_tables
    from services.sms_gateway.adapters import tables as sms_tables
    from shared.db.engine import create_engine, session_factory
    from shared.dispatch.queue import sealing
    from shared.privacy.codec import PersonalData
    from shared.secrets import SecretBox

    ledgers = {
        "sms_gateway": sms_tables.DISPATCH.messages,
        "email_gateway": email_tables.DISPATCH.messages,
    }

    def has_table(conn: sa.Connection, name: str) -> bool:
        return sa.inspect(conn).has_table(name)

    unknown = sorted(set(service) - set(ledgers))
    if unknown:
        raise typer.BadParameter(f"--service: {', '.join(unknown)} (one of {', '.join(GATEWAYS)})")

    async def run() -> dict[str, object]:
        settings = load_config()
        nc = await connect_nats()
        done: dict[str, object] = {}
        try:
            personal = await PersonalData(nc, SecretBox.from_config(settings)).ready()
            for name in service:
                table = ledgers[name]
                engine = create_engine(settings.service_database_url(name))
                try:
                    async with engine.connect() as conn:
                        present = await conn.run_sync(has_table, table.name)
                    if not present:
                        done[name] = {"error": "no ledger yet (the gateway never started)"}
                        continue
                    db = session_factory(engine)
                    sealed = await sealing.seal_stored(db, table, personal)
                    left = await sealing.clear_count(db, table)
                    done[name] = {"sealed": sealed, "left_in_clear": left}
                finally:
                    await engine.dispose()
        finally:
            await nc.close()
        return done

    typer.echo(json.dumps(asyncio.run(run())))


@privacy.command("rewrite-streams")
def rewrite_streams(
    apply: bool = typer.Option(
        False, "--apply", help="Rewrite (without it: only count what would change)."
    ),
    force: bool = typer.Option(
        False, help="Rewrite even though a consumer of a stream to rewrite is in use."
    ),
    mapping: str | None = typer.Option(
        None, help="Write each audit record's old and new hash to this file (JSON Lines)."
    ),
    actor: str = typer.Option("cli:operator", help="Who ran it, for the record."),
) -> None:
    """Seal events written in clear before personal data was sealed, in place (sequences kept),
    and rebuild the audit trail from them. Stop every service first (docs/privacy.md)."""
    from pathlib import Path

    from services.audit.composition import AuditService
    from services.cli.rewrite_streams import RewriteRefused, Trail, rewrite, survey
    from shared.db.engine import create_engine, session_factory
    from shared.db.migrate import migrate, service_chain
    from shared.privacy.codec import PersonalData
    from shared.secrets import SecretBox

    settings = load_config()

    async def run() -> int:
        nc = await connect_nats()
        engine = create_engine(settings.service_database_url("audit"))
        try:
            if not apply:
                typer.echo(json.dumps((await survey(nc)).as_json()))
                return 0
            personal = await PersonalData(nc, SecretBox.from_config(settings)).ready()
            # The trail's tables, in case the audit service never ran on this database.
            await migrate(engine, [service_chain("audit", AuditService().migrations())])
            try:
                done = await rewrite(
                    nc,
                    personal,
                    Trail(engine, session_factory(engine)),
                    actor=actor,
                    force=force,
                    mapping=Path(mapping) if mapping else None,
                    replicas=settings.stream_replicas,
                )
            except RewriteRefused as exc:
                typer.echo(f"refused: {exc} (stop the services, or --force)", err=True)
                return 2
            typer.echo(json.dumps(done, default=str))
            return 0
        finally:
            await engine.dispose()
            await nc.close()

    raise typer.Exit(asyncio.run(run()))
