"""`stagger group sso`: a group's OpenID Connect sign-in (Entra ID, Google Workspace, any)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import typer

from shared.config import load_config

if TYPE_CHECKING:
    from nats.aio.client import Client

    from services.config.sso.store import SsoStore

sso = typer.Typer(help="Single sign-on with the group's identity provider.", no_args_is_help=True)


async def _store() -> tuple[Client, SsoStore]:
    from services.cli.connect import connect_nats as _connect
    from services.config.sso.store import SsoStore
    from shared.bus.topology import ensure_streams
    from shared.secrets import SecretBox

    nc = await _connect()
    await ensure_streams(nc.jetstream(), load_config().stream_replicas)
    return nc, SsoStore(nc, SecretBox.from_config(load_config()))


@sso.command("set")
def sso_set(
    group: str = typer.Argument(..., help="The group's id."),
    preset: str = typer.Option(..., help="entra, google or generic."),
    client_id: str = typer.Option(..., help="The application (client) id at the provider."),
    client_secret: str = typer.Option(
        ..., prompt=True, hide_input=True, help="The client secret (asked for when left out)."
    ),
    tenant: str = typer.Option(None, help="Entra ID: the directory (tenant) id or domain."),
    discovery_url: str = typer.Option(
        None, help="generic: the issuer's URL or its /.well-known/openid-configuration."
    ),
    allowed_domain: str = typer.Option(
        None, help="Only emails of this domain (required for Google: checked against hd)."
    ),
) -> None:
    """Let the group's staff sign in with its identity provider (secret stored sealed)."""
    from shared.bus.subjects import InvalidToken
    from shared.domain.oidc import OidcConfigError

    async def run() -> None:
        nc, store = await _store()
        try:
            provider = await store.configure(
                group,
                preset=preset,
                client_id=client_id,
                client_secret=client_secret,
                allowed_domain=allowed_domain,
                tenant=tenant,
                discovery_url=discovery_url,
                actor="cli:operator",
            )
        except (OidcConfigError, InvalidToken) as exc:
            typer.echo(f"not set: {exc}", err=True)
            raise typer.Exit(1) from exc
        finally:
            await nc.close()
        typer.echo(f"single sign-on for {group}: {provider.preset}, issuer {provider.issuer}")
        settings = load_config()
        typer.echo(f"redirect URI to register: {settings.public_url}/console/sso/callback")

    asyncio.run(run())


@sso.command("show")
def sso_show(group: str = typer.Argument(..., help="The group's id.")) -> None:
    """The group's provider settings (the secret is never shown)."""

    async def run() -> None:
        nc, store = await _store()
        try:
            provider = await store.get(group)
        finally:
            await nc.close()
        if provider is None:
            typer.echo(f"single sign-on is off for {group}")
            return
        for label, value in (
            ("preset", provider.preset),
            ("issuer", provider.issuer),
            ("discovery", provider.discovery_url),
            ("client id", provider.client_id),
            ("client secret", "set (sealed)"),
            ("allowed domain", provider.allowed_domain or "any"),
        ):
            typer.echo(f"{label:<15} {value}")

    asyncio.run(run())


@sso.command("off")
def sso_off(group: str = typer.Argument(..., help="The group's id.")) -> None:
    """Turn the group's single sign-on off (local passwords still work)."""

    async def run() -> None:
        nc, store = await _store()
        try:
            removed = await store.remove(group, actor="cli:operator")
        finally:
            await nc.close()
        typer.echo(f"single sign-on {'turned off' if removed else 'was already off'} for {group}")

    asyncio.run(run())
