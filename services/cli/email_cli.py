"""`stagger email …`: the email Test (issue 19)."""

from __future__ import annotations

import asyncio

import typer

app = typer.Typer(help="Email accounts.", no_args_is_help=True)


@app.command("test")
def email_test(site: str = typer.Option(..., help="Site id")) -> None:
    """Sign in to the site's SMTP and IMAP servers and open the inbox and Sent folder; sends
    nothing. Exit status 0 when every configured part works."""
    from services.cli.connect import connect_nats as _connect
    from services.config.email_test import EmailGatewayUnavailable, request_email_test

    async def run() -> int:
        nc = await _connect()
        try:
            result = await request_email_test(nc, site)
        except EmailGatewayUnavailable as exc:
            typer.echo(str(exc), err=True)
            return 2
        finally:
            await nc.close()
        for name in ("smtp", "imap"):
            half = result.get(name)
            if half is None:
                typer.echo(f"{name.upper()}: not configured")
                continue
            mark = "OK" if half.get("ok") else "FAILED"
            opened = ", ".join(half.get("opened") or [])
            extra = f" (opened {opened})" if opened else ""
            typer.echo(f"{name.upper()}: {mark}: {half.get('detail')}{extra}")
        return 0 if result.get("ok") else 1

    raise typer.Exit(asyncio.run(run()))
