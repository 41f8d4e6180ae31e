"""`stagger batch show|cancel`: a batch's counts and progress, and cancelling what still waits.

An operator's command: it reads the config service's batch read model from its database and
publishes the gateways' cancel command to NATS, as the API's cancel does (actor `cli:operator`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import typer

from shared.config import load_config

batch_cli = typer.Typer(help="Batches: one per submission.", no_args_is_help=True)

SiteOption = typer.Option(..., "--site", help="The site the batch was submitted to.")
BatchArgument = typer.Argument(..., help="The batch id (from the submission's response).")


def _run(work: Callable[[Any, Any, Any], Awaitable[int]], site: str, batch_id: str) -> int:
    from services.cli.connect import connect_nats as _connect
    from services.config.adapters.batches import BatchStore
    from services.config.adapters.settings_store import SettingsStore
    from services.config.handlers.batch_commands import BatchCommands
    from shared.bus.topology import SETTINGS
    from shared.db.engine import create_engine, session_factory
    from shared.domain.batches import InvalidBatchId, check_batch_id
    from shared.eventstore import EventStore

    try:
        canonical = check_batch_id(batch_id)
    except InvalidBatchId as exc:
        raise typer.BadParameter(str(exc), param_hint="BATCH_ID") from None

    async def run() -> int:
        engine = create_engine(load_config().service_database_url("config"))
        nc = await _connect()
        try:
            commands = BatchCommands(nc, BatchStore(session_factory(engine)))
            batch = await commands.store.get(canonical)
            state = await SettingsStore(EventStore(nc, SETTINGS)).site(site)
            if batch is None or state is None or batch.site_id != site:
                typer.echo(f"no batch {canonical} of site {site}", err=True)
                return 1
            return await work(commands, state, batch)
        finally:
            await nc.close()
            await engine.dispose()

    return asyncio.run(run())


@batch_cli.command("show")
def show(
    batch_id: str = BatchArgument,
    site: str = SiteOption,
    as_json: bool = typer.Option(False, "--json", help="Print the batch as JSON."),
) -> None:
    """Counts by state, progress and the forecast finish of one batch."""

    async def work(commands: Any, state: Any, batch: Any) -> int:
        forecast = await commands.forecast_finish(state, batch)
        if as_json:
            typer.echo(json.dumps({**batch.as_json(), "forecast": forecast}, indent=2))
            return 0
        p = batch.progress
        typer.echo(
            f"batch {batch.batch_id} ({batch.channel}, site {batch.site_id}), "
            f"submitted {batch.submitted_at:%Y-%m-%d %H:%M} UTC by {batch.submitted_by or '?'}"
        )
        typer.echo(f"{p.finished:,} of {p.total:,} finished ({p.percent}%)")
        for name, count in p.counts.items():
            if count:
                typer.echo(f"  {name:<10} {count:>8,}")
        if forecast and forecast["last_send"]:
            typer.echo(f"last message expected at {forecast['last_send']}")
        return 0

    raise typer.Exit(_run(work, site, batch_id))


@batch_cli.command("cancel")
def cancel(batch_id: str = BatchArgument, site: str = SiteOption) -> None:
    """Cancel every message of the batch not yet handed to a provider."""

    async def work(commands: Any, state: Any, batch: Any) -> int:
        outcome = await commands.cancel_batch(state, batch, actor="cli:operator")
        typer.echo(outcome.message)
        return 0

    raise typer.Exit(_run(work, site, batch_id))
