"""The `stagger` command."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import typer

from services.cli import observe
from services.cli.batches import batch_cli
from services.cli.connect import connect_nats
from shared.config import SERVICE_NAMES, load_config

if TYPE_CHECKING:
    pass

app = typer.Typer(
    help="Stagger: paced, audited patient email and SMS for dental groups.", no_args_is_help=True
)


@app.command()
def up(
    demo: bool = typer.Option(
        True,
        "--demo/--no-demo",
        help="On an empty var dir, create the demo group and print its admin's sign-in link.",
    ),
) -> None:
    """Run the whole system on embedded defaults until Ctrl-C."""
    from services.cli.first_run import create_demo, mark_if_fresh
    from services.cli.stack import embedded_nats, stack_processes
    from shared.runtime.supervisor import Supervisor

    settings = load_config()
    first_run = mark_if_fresh(settings.var_dir) and demo
    supervisor: Supervisor = Supervisor(
        stack_processes(settings),
        nats=embedded_nats(settings),
        stop_timeout=settings.drain_timeout_seconds + 5,
        after_start=(lambda: create_demo(settings, supervisor.say)) if first_run else None,
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
    from services.cli.stack import definition_of
    from shared.runtime.service import main

    main(definition_of(name))


groups = typer.Typer(help="Dental groups (operators).", no_args_is_help=True)
app.add_typer(groups, name="group")

from services.cli.sso import sso as _sso  # noqa: E402 - a sub-command group of `group`

groups.add_typer(_sso, name="sso")

from services.cli.admin import admin as _admin  # noqa: E402

app.add_typer(_admin, name="admin")

from services.cli.privacy import privacy as _privacy  # noqa: E402

app.add_typer(_privacy, name="privacy")


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
        nc = await connect_nats()
        try:
            await ensure_streams(nc.jetstream(), load_config().stream_replicas)
            handlers = ConfigHandlers(
                nc,
                SettingsStore(EventStore(nc, SETTINGS)),
                SecretBox.from_config(load_config()),
                None,
                simulator_enabled=load_config().sms_simulator_enabled,
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
        nc = await connect_nats()
        try:
            await ensure_streams(nc.jetstream(), load_config().stream_replicas)
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
        nc = await connect_nats()
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
        nc = await connect_nats()
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
    """Re-seal every site's and group's secrets, and every key of the `privacy_keys` bucket
    (recipients' data keys and the tag key), under the first key of STAGGER_SECRET_KEY.

    Writes one settings event per group or site that holds a secret sealed under another key
    (actor `cli:operator`) and rewrites the bucket's stale entries, so that key can then be
    removed. Older events in the SETTINGS
    stream keep their old sealed values: once the old key is gone those historical values
    cannot be opened, while every current setting can. The audit chain is unaffected.
    """
    from services.config.adapters.settings_store import SettingsStore
    from services.config.handlers import ConfigHandlers
    from shared.bus.topology import SETTINGS
    from shared.eventstore import EventStore
    from shared.privacy.keyring import BUCKET, RecipientKeys
    from shared.secrets import SecretBox, SecretKeyError

    async def run() -> int:
        nc = await connect_nats()
        try:
            box = SecretBox.from_config(load_config())
            handlers = ConfigHandlers(nc, SettingsStore(EventStore(nc, SETTINGS)), box, None)
            keys = RecipientKeys(nc, box)
            # Both checks first: a key nothing opens stops the rotation before any write.
            stale = await handlers.reseal_check()
            stale_keys = await keys.stale()
            if check:
                for name in stale:
                    typer.echo(f"{name}: holds secrets sealed under an older key")
                typer.echo(f"{len(stale)} aggregate(s) to re-seal")
                typer.echo(f"{len(stale_keys)} key(s) of {BUCKET} to re-seal")
                return 0
            written = await handlers.reseal(actor="cli:operator")
            resealed = await keys.reseal()
        except SecretKeyError as exc:
            typer.echo(f"not re-sealed: {exc}", err=True)
            return 1
        finally:
            await nc.close()
        for name in written:
            typer.echo(f"{name}: re-sealed")
        typer.echo(f"{resealed} key(s) of {BUCKET} re-sealed")
        typer.echo(
            f"{len(written)} aggregate(s) re-sealed; every current secret is now sealed under "
            "the first key of STAGGER_SECRET_KEY"
        )
        return 0

    raise typer.Exit(asyncio.run(run()))


app.add_typer(observe.audit, name="audit")
app.add_typer(observe.replies, name="replies")
app.add_typer(observe.events, name="events")


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
    from shared.bus.topology import SETTINGS
    from shared.domain.planning import site_forecast
    from shared.eventstore import EventStore

    async def run() -> None:
        nc = await connect_nats()
        try:
            state = await SettingsStore(EventStore(nc, SETTINGS)).site(site)
        finally:
            await nc.close()
        if state is None:
            typer.echo(f"no site {site}", err=True)
            raise typer.Exit(1)
        result = site_forecast(state.settings, channel, messages, queued, days, site_id=site)  # type: ignore[arg-type]
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
        nc = await connect_nats()
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
        nc = await connect_nats()
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


def _email_cli() -> typer.Typer:
    from services.cli.email_cli import app as email_app

    return email_app


app.add_typer(_email_cli(), name="email")  # issue 19: `stagger email test --site`

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
