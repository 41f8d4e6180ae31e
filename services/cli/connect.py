"""How the `stagger` command reaches NATS: the configured servers, one connection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from shared.config import load_config

if TYPE_CHECKING:
    from nats.aio.client import Client


def nats_servers() -> list[str]:
    return load_config().nats_servers


async def connect_nats() -> Client:
    import nats

    from shared.bus.headers import use_fast_headers

    settings = load_config()
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
