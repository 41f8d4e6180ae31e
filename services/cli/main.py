"""The `stagger` command."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from typing import TYPE_CHECKING, Any, cast

import typer

from services.cli.batches import batch_cli
from shared.config import SERVICE_NAMES, load_settings

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

app = typer.Typer(
    help="Stagger: paced, audited patient email and SMS for dental groups.", no_args_is_help=True
)


@app.command()
def up() -> None:
    """Run the whole system on embedded defaults until Ctrl-C."""
    from services.cli.stack import embedded_nats, stack_processes
    from shared.runtime.supervisor import Supervisor

    settings = load_settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(
        stack_processes(settings),
        nats=embedded_nats(settings),
        stop_timeout=settings.drain_timeout_seconds + 5,
    )
    supervisor.say(
        f"Stagger starting; console and API at http://{settings.http_host}:{settings.http_port}"
        f" (health: /healthz). Ctrl-C stops everything."
    )
    raise typer.Exit(asyncio.run(supervisor.run()))


@app.command()
def service(name: str = typer.Argument(..., help=f"One of: {', '.join(SERVICE_NAMES)}")) -> None:
    """Run one replica of one service (what containers run)."""
    if name not in SERVICE_NAMES:
        raise typer.BadParameter(
            f"unknown service {name!r}; choose from {', '.join(SERVICE_NAMES)}"
        )
    from shared.runtime.service import main

    module = importlib.import_module(f"services.{name}.service")
    main(module.definition())


def _nats_servers() -> list[str]:
    return load_settings().nats_servers


async def _connect() -> Client:
    import nats

    from shared.bus.headers import use_fast_headers

    settings = load_settings()
    options: dict[str, Any] = {
        "servers": settings.nats_servers,
        "connect_timeout": 3,
        "max_reconnect_attempts": 2,
    }
    if settings.nats_user:
        options["user"] = settings.nats_user
        options["password"] = (
            settings.nats_password.get_secret_value() if settings.nats_password else None
        )
    if settings.nats_creds:
        options["user_credentials"] = str(settings.nats_creds)
    try:
        nc = await nats.connect(**options)
    except Exception as exc:
        typer.echo(f"cannot reach NATS at {', '.join(settings.nats_servers)}: {exc}", err=True)
        raise typer.Exit(2) from exc
    use_fast_headers(nc)
    return nc


groups = typer.Typer(help="Dental groups (operators).", no_args_is_help=True)
app.add_typer(groups, name="group")


@groups.command("create")
def group_create(
    group_id: str = typer.Argument(..., help="Lowercase letters, digits and '-'."),
    name: str = typer.Option(..., help="The group's name."),
    timezone: str = typer.Option("Europe/London", help="Default IANA time zone of its sites."),
    region: str = typer.Option("UK", help="Default region: UK, AU, NZ, US or other."),
) -> None:
    """Create a group; its sites inherit these defaults."""
    from services.config.adapters.settings_store import SettingsStore
    from services.config.handlers import ConfigHandlers
    from shared.bus.topology import SETTINGS, ensure_streams
    from shared.domain.site_settings import SettingsError
    from shared.eventstore import EventStore
    from shared.secrets import SecretBox

    async def run() -> None:
        nc = await _connect()
        try:
            await ensure_streams(nc.jetstream(), load_settings().stream_replicas)
            handlers = ConfigHandlers(
                nc,
                SettingsStore(EventStore(nc, SETTINGS)),
                SecretBox.from_settings(load_settings()),
                None,
                simulator_enabled=load_settings().sms_simulator_enabled,
            )
            group = await handlers.create_group(
                group_id,
                name,
                {"profile": {"timezone": timezone, "region": region}},
                actor="cli:operator",
            )
            typer.echo(f"group {group.group_id} created (version {group.version})")
        except (SettingsError, ValueError) as exc:
            typer.echo(f"not created: {exc}", err=True)
            raise typer.Exit(1) from exc
        finally:
            await nc.close()

    asyncio.run(run())


tokens = typer.Typer(help="API tokens.", no_args_is_help=True)
app.add_typer(tokens, name="token")


@tokens.command("issue")
def token_issue(
    group: str = typer.Option(..., help="The group the token belongs to."),
    role: str = typer.Option(..., help="group_admin, site_manager, auditor or sender."),
    site: list[str] = typer.Option([], help="A site the token may act on (repeat)."),
    label: str = typer.Option("", help="Who or what the token is for."),
    expires_in: str | None = typer.Option(
        None, help="Refuse the token after this long: 30d, 12h, 90m, 2w."
    ),
    expires_at: str | None = typer.Option(
        None, help="Refuse the token from this ISO 8601 instant on (no offset: UTC)."
    ),
) -> None:
    """Issue a token; it is printed once and only its hash is kept."""
    from shared.bus.topology import ensure_streams
    from shared.events.schemas.access import Role
    from shared.tokens import expiry, issue_token

    if role not in ("group_admin", "site_manager", "auditor", "sender"):
        raise typer.BadParameter("role must be group_admin, site_manager, auditor or sender")
    if role == "site_manager" and not site:
        raise typer.BadParameter("a site manager needs at least one --site")
    try:
        expires = expiry(expires_in=expires_in, expires_at=expires_at)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None

    async def run() -> None:
        nc = await _connect()
        try:
            await ensure_streams(nc.jetstream(), load_settings().stream_replicas)
            token_id, token = await issue_token(
                nc,
                group_id=group,
                role=cast(Role, role),  # checked against the roles above
                sites=site,
                label=label,
                actor="cli:operator",
                expires_at=expires,
            )
        finally:
            await nc.close()
        until = f", valid until {expires.isoformat(timespec='seconds')}" if expires else ""
        typer.echo(
            f"token {token_id} ({role} of {group}{until}); keep it safe, it is not shown again:"
        )
        typer.echo(token)

    asyncio.run(run())


@tokens.command("revoke")
def token_revoke(
    token_id: str = typer.Argument(...),
    reason: str = typer.Option("", help="Why, for the audit log."),
) -> None:
    """Revoke a token at once."""
    from shared.tokens import revoke_token

    async def run() -> None:
        nc = await _connect()
        try:
            await revoke_token(nc, token_id, reason=reason, actor="cli:operator")
        except KeyError:
            typer.echo(f"no token {token_id}", err=True)
            raise typer.Exit(1) from None
        finally:
            await nc.close()
        typer.echo(f"token {token_id} revoked")

    asyncio.run(run())


@tokens.command("list")
def token_list(group: str | None = typer.Option(None, help="Only this group.")) -> None:
    """List tokens (ids, roles, sites, expiry; never secrets)."""
    from datetime import UTC, datetime

    from shared.bus.topology import ACCESS
    from shared.eventstore import EventStore
    from shared.tokens import TokenRegistry

    async def run() -> None:
        nc = await _connect()
        try:
            registry = TokenRegistry(nc)
            async for event in EventStore(nc, ACCESS).replay():
                registry._apply(event)
            for row in registry.listing(group):
                expires = row["expires_at"]
                if row["revoked"]:
                    state = "revoked"
                elif isinstance(expires, datetime) and expires <= datetime.now(UTC):
                    state = "expired"
                else:
                    state = "active"
                sites = ",".join(row["sites"]) or "-"  # type: ignore[arg-type]
                typer.echo(
                    f"{row['token_id']}  {row['group_id']:<16} {row['role']:<13} "
                    f"{state:<8} sites={sites} "
                    + (f"expires={expires.isoformat()} " if isinstance(expires, datetime) else "")
                    + str(row["label"])
                )
        finally:
            await nc.close()

    asyncio.run(run())


secrets_cli = typer.Typer(help="Secrets sealed inside settings events.", no_args_is_help=True)
app.add_typer(secrets_cli, name="secrets")


@secrets_cli.command("reseal")
def secrets_reseal(
    check: bool = typer.Option(
        False, "--check", help="Only list what is not sealed under the first key; write nothing."
    ),
) -> None:
    """Re-seal every site's and group's secrets under the first key of STAGGER_SECRET_KEY.

    Writes one settings event per group or site that holds a secret sealed under another key
    (actor `cli:operator`), so that key can then be removed. Older events in the SETTINGS
    stream keep their old sealed values: once the old key is gone those historical values
    cannot be opened, while every current setting can. The audit chain is unaffected.
    """
    from services.config.adapters.settings_store import SettingsStore
    from services.config.handlers import ConfigHandlers
    from shared.bus.topology import SETTINGS
    from shared.eventstore import EventStore
    from shared.secrets import SecretBox, SecretKeyError

    async def run() -> int:
        nc = await _connect()
        try:
            handlers = ConfigHandlers(
                nc,
                SettingsStore(EventStore(nc, SETTINGS)),
                SecretBox.from_settings(load_settings()),
                None,
            )
            if check:
                stale = await handlers.reseal_check()
                for name in stale:
                    typer.echo(f"{name}: holds secrets sealed under an older key")
                typer.echo(f"{len(stale)} aggregate(s) to re-seal")
                return 0
            written = await handlers.reseal(actor="cli:operator")
        except SecretKeyError as exc:
            typer.echo(f"not re-sealed: {exc}", err=True)
            return 1
        finally:
            await nc.close()
        for name in written:
            typer.echo(f"{name}: re-sealed")
        typer.echo(
            f"{len(written)} aggregate(s) re-sealed; every current secret is now sealed under "
            "the first key of STAGGER_SECRET_KEY"
        )
        return 0

    raise typer.Exit(asyncio.run(run()))


audit = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
app.add_typer(audit, name="audit")


def _audit_db() -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    from shared.db.engine import create_engine, session_factory

    engine = create_engine(load_settings().service_database_url("audit"))
    return engine, session_factory(engine)


@audit.command("verify")
def audit_verify() -> None:
    """Recompute every hash chain; exit 1 and name each broken row if any was altered."""
    from services.audit.queries import verify

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

    from services.audit.queries import EventFilter, csv_line, iter_events

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
app.add_typer(replies, name="replies")


@replies.command("unrouted")
def replies_unrouted(
    limit: int = typer.Option(100, min=1, help="Most replies shown, newest first."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines instead of a table."),
) -> None:
    """Replies no single group could be named for (no opt-out was applied), with the reason."""
    import json

    from services.sms_gateway.unrouted import listing
    from shared.db.engine import create_engine, session_factory

    async def run() -> None:
        engine = create_engine(load_settings().service_database_url("sms_gateway"))
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
app.add_typer(events, name="events")


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
        nc = await _connect()
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
        nc = await _connect()
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


@app.command()
def forecast(
    site: str = typer.Option(..., help="Site id"),
    channel: str = typer.Option("sms", help="sms or email"),
    messages: int = typer.Option(100, help="New messages"),
    queued: int = typer.Option(0, help="Already queued"),
    days: int = typer.Option(7, help="Horizon in days"),
) -> None:
    """How long sending a batch will take at a site, from its current settings."""
    from services.config.adapters.settings_store import SettingsStore
    from services.config.forecasting import site_forecast
    from shared.bus.topology import SETTINGS
    from shared.eventstore import EventStore

    async def run() -> None:
        nc = await _connect()
        try:
            state = await SettingsStore(EventStore(nc, SETTINGS)).site(site)
        finally:
            await nc.close()
        if state is None:
            typer.echo(f"no site {site}", err=True)
            raise typer.Exit(1)
        result = site_forecast(state.settings, channel, messages, queued, days)  # type: ignore[arg-type]
        typer.echo(result["summary"])
        for key in (
            "first_send",
            "last_send",
            "sends_per_day",
            "session_minutes_needed",
            "warning",
            "note",
        ):
            if result.get(key) is not None:
                typer.echo(f"  {key.replace('_', ' ')}: {result[key]}")
        for line in result["explanation"]:
            typer.echo(f"  - {line}")

    asyncio.run(run())


@app.command("send-now")
def send_now(
    site: str = typer.Option(..., help="Site id"),
    channel: str = typer.Option(..., help="sms or email"),
    reason: str = typer.Option("", help="Why, for the audit log"),
) -> None:
    """Send everything queued for a site now (the delay is ignored, opt-outs and caps are not)."""
    from services.config.adapters.settings_store import SettingsStore
    from shared.bus import subjects
    from shared.bus.topology import CONTROL, SETTINGS
    from shared.events.envelope import make_event
    from shared.events.schemas.control import SendNowRequested
    from shared.eventstore import EventStore

    if channel not in ("sms", "email"):
        raise typer.BadParameter("channel must be sms or email")

    async def run() -> None:
        nc = await _connect()
        try:
            state = await SettingsStore(EventStore(nc, SETTINGS)).site(site)
            if state is None:
                typer.echo(f"no site {site}", err=True)
                raise typer.Exit(1)
            data = SendNowRequested(
                group_id=state.group_id,
                site_id=site,
                channel=channel,  # type: ignore[arg-type]
                reason=reason,
            )
            event = make_event(
                data,
                source="cli",
                actor="cli:operator",
                subject=site,
                group_id=state.group_id,
                site_id=site,
            )
            await EventStore(nc, CONTROL).append(subjects.control("send_now", site), event)
            typer.echo(f"send-now requested for {site} ({channel}); event {event.id}")
        finally:
            await nc.close()

    asyncio.run(run())


provider = typer.Typer(help="SMS provider accounts.", no_args_is_help=True)
app.add_typer(provider, name="provider")
app.add_typer(batch_cli, name="batch")


@provider.command("test")
def provider_test(site: str = typer.Option(..., help="Site id")) -> None:
    """Check a site's SMS provider credentials and show the credits left."""
    import json

    from services.config.adapters.settings_store import SettingsStore
    from shared.bus import subjects
    from shared.bus.topology import SETTINGS
    from shared.eventstore import EventStore

    async def run() -> int:
        nc = await _connect()
        try:
            state = await SettingsStore(EventStore(nc, SETTINGS)).site(site)
            if state is None:
                typer.echo(f"no site {site}", err=True)
                return 1
            try:
                reply = await nc.request(
                    subjects.rpc("sms_gateway", "provider_test"),
                    json.dumps(
                        {"site_id": site, "group_id": state.group_id, "actor": "cli:operator"}
                    ).encode(),
                    timeout=15,
                )
            except Exception as exc:
                typer.echo(f"no SMS gateway answered: {exc}", err=True)
                return 2
        finally:
            await nc.close()
        result = json.loads(reply.data)
        if result.get("ok"):
            typer.echo(f"provider OK: {result.get('balance')} {result.get('unit') or ''} left")
            return 0
        typer.echo(f"provider test failed: {result.get('error')}", err=True)
        return 1

    raise typer.Exit(asyncio.run(run()))


docs = typer.Typer(help="Regenerate generated documentation.", no_args_is_help=True)
app.add_typer(docs, name="docs")


@docs.command("events")
def docs_events(
    output: str = typer.Option("docs/events.md", help="Where to write the catalogue."),
) -> None:
    """Write the event catalogue from the registry."""
    from pathlib import Path

    from shared.events.catalogue import render_catalogue

    Path(output).write_text(render_catalogue())
    typer.echo(f"wrote {output}")


@docs.command("asyncapi")
def docs_asyncapi(
    output: str = typer.Option("docs/asyncapi", help="Directory for one document per service."),
) -> None:
    """Write each service's AsyncAPI document from its FastStream broker (nothing connects)."""
    from pathlib import Path

    from services.cli.asyncapi import write_all

    for path in write_all(Path(output)):
        typer.echo(f"wrote {path}")


if __name__ == "__main__":
    app()
