"""`stagger audit`, `replies` and `events`: what happened, from the trail and the bus."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import typer

from services.cli.connect import connect_nats
from shared.config import load_config

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker


audit = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)


def _audit_db() -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    from shared.db.engine import create_engine, session_factory

    engine = create_engine(load_config().service_database_url("audit"))
    return engine, session_factory(engine)


@audit.command("verify")
def audit_verify() -> None:
    """Recompute every hash chain; exit 1 and name each broken row if any was altered."""
    from services.audit.handlers.queries import verify

    async def run() -> int:
        engine, db = _audit_db()
        try:
            result = await verify(db)
        finally:
            await engine.dispose()
        if result.ok:
            typer.echo(f"audit trail intact: {result.records} records in {result.chains} chains")
            return 0
        typer.echo(f"AUDIT TRAIL BROKEN: {len(result.problems)} problem(s)", err=True)
        for problem in result.problems:
            typer.echo(
                f"  position {problem['position']} (event {problem['event_id']}, chain "
                f"{problem['chain']}): {problem['problem']}",
                err=True,
            )
        return 1

    raise typer.Exit(asyncio.run(run()))


@audit.command("export")
def audit_export(
    format: str = typer.Option("jsonl", help="jsonl or csv"),
    site: str | None = typer.Option(None, help="Only this site."),
    group: str | None = typer.Option(None, help="Only this group."),
    event_type: str | None = typer.Option(None, "--type", help="Exact type or prefix ending '.'"),
) -> None:
    """Write records to standard output as JSON Lines or CSV."""
    import json
    import sys

    from services.audit.handlers.queries import EventFilter, csv_line, iter_events

    if format not in ("jsonl", "csv"):
        raise typer.BadParameter("format must be jsonl or csv")

    async def run() -> None:
        engine, db = _audit_db()
        try:
            if format == "csv":
                sys.stdout.write(csv_line(None))
            flt = EventFilter(site_id=site, group_id=group, type=event_type)
            async for item in iter_events(db, flt):
                sys.stdout.write(csv_line(item) if format == "csv" else json.dumps(item) + "\n")
        finally:
            await engine.dispose()

    asyncio.run(run())


replies = typer.Typer(help="Patients' SMS replies.", no_args_is_help=True)


@replies.command("unrouted")
def replies_unrouted(
    limit: int = typer.Option(100, min=1, help="Most replies shown, newest first."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines instead of a table."),
) -> None:
    """Replies no single group could be named for (no opt-out was applied), with the reason."""
    import json

    from services.sms_gateway.adapters.unrouted import listing
    from shared.db.engine import create_engine, session_factory

    async def run() -> None:
        engine = create_engine(load_config().service_database_url("sms_gateway"))
        try:
            rows = await listing(session_factory(engine), limit)
        finally:
            await engine.dispose()
        for row in rows:
            if as_json:
                typer.echo(json.dumps(row, default=str))
                continue
            typer.echo(
                f"{row['recorded_at']:%Y-%m-%d %H:%M:%S}  {row['provider']} account "
                f"{row['account_id'] or '-'}  to {row['to_number']} from {row['from_number']}: "
                f"{row['body']!r}  [{row['code']}] {row['reason']}"
            )

    asyncio.run(run())


events = typer.Typer(help="The event log.", no_args_is_help=True)


def _print_event(msg: Msg) -> None:
    from shared.events.codec import UndecodableEvent, decode
    from shared.eventstore import stream_position

    seq = stream_position(msg)[0]
    try:
        event = decode(msg.headers, msg.data, lenient=True)
        typer.echo(
            f"{seq:>8} {event.time.isoformat()} {event.ce_type:<44} actor={event.actor} "
            f"subject={event.subject or '-'} {msg.data.decode(errors='replace')[:300]}"
        )
    except UndecodableEvent as exc:
        typer.echo(f"{seq:>8} (not an event: {exc})")


@events.command("tail")
def events_tail(
    subject: str = typer.Option(">", help="Subject filter, e.g. 'dispatch.sms.>'"),
    stream: str = typer.Option("AUDIT", help="Stream to follow"),
    event_type: str | None = typer.Option(None, "--type", help="Only this type (prefix)"),
) -> None:
    """Follow events live (Ctrl-C stops)."""
    from contextlib import aclosing

    from shared.eventstore import replay_batches

    async def run() -> None:
        nc = await connect_nats()
        js = nc.jetstream()
        start = (await js.stream_info(stream)).state.last_seq + 1
        batches = replay_batches(
            nc,
            stream,
            filter_subject=None if subject == ">" else subject,
            from_sequence=start,
            follow=True,
        )
        try:
            async with aclosing(batches):
                async for batch in batches:
                    for msg in batch:
                        ce_type = (msg.headers or {}).get("ce-type", "")
                        if event_type is None or ce_type.startswith(event_type):
                            _print_event(msg)
        finally:
            await nc.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@events.command("replay")
def events_replay(
    from_sequence: int = typer.Option(1, "--from", help="First stream sequence"),
    to_sequence: int | None = typer.Option(None, "--to", help="Last stream sequence"),
    stream: str = typer.Option("AUDIT", help="Stream to read"),
    subject: str = typer.Option(">", help="Subject filter"),
) -> None:
    """Print the events of a stream from a position (to the current end)."""
    from contextlib import aclosing

    from shared.eventstore import replay_batches

    async def run() -> None:
        nc = await connect_nats()
        batches = replay_batches(
            nc,
            stream,
            filter_subject=None if subject == ">" else subject,
            from_sequence=from_sequence,
            until_sequence=to_sequence,
        )
        try:
            async with aclosing(batches):
                async for batch in batches:
                    for msg in batch:
                        _print_event(msg)
        finally:
            await nc.close()

    asyncio.run(run())
