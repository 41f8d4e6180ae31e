"""The email Test (issue 19): connect, sign in, open the inbox and the Sent folder, send
nothing; report success or the server's reason, for SMTP and IMAP separately.

What the wizard's Test button, `POST /api/v1/sites/{site}/email-test` and
`stagger email test --site` show. Only the saved settings are tested.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Any

from services.email_gateway.adapters.imap import ImapSession
from services.email_gateway.adapters.imap_errors import ImapFailure
from services.email_gateway.adapters.mailbox import imap_endpoint
from shared.email_auth.credentials import CredentialError
from shared.net.outbound import OutboundGuard
from shared.secrets import SecretKeyError
from shared.sites import Site

if TYPE_CHECKING:
    from services.email_gateway.adapters.channel import EmailAdapter


async def smtp_half(adapter: EmailAdapter, site: Site) -> dict[str, Any]:
    """Connect and sign in to SMTP (no MAIL command)."""
    if adapter.account_for(site) is None:
        return {"ok": False, "detail": "email is disabled or has no SMTP server"}
    try:
        account = adapter.smtp_account(site)
    except (SecretKeyError, CredentialError) as exc:
        return {"ok": False, "detail": f"cannot use the sign-in settings: {exc}"}
    outcome = await adapter.pool.check(account)
    ok = outcome.kind == "sent"
    return {"ok": ok, "stage": outcome.stage, "detail": outcome.reply, "code": outcome.code}


async def imap_half(
    adapter: EmailAdapter, site: Site, *, tls: ssl.SSLContext, guard: OutboundGuard
) -> dict[str, Any] | None:
    """Connect, sign in and EXAMINE the inbox and the Sent folder (None: no IMAP set up)."""
    imap = site.settings.email.imap
    try:
        endpoint = imap_endpoint(site, adapter.box, adapter.token_provider)
    except (SecretKeyError, CredentialError) as exc:
        return {"ok": False, "detail": f"cannot use the sign-in settings: {exc}"}
    if endpoint is None:
        return None
    settings = adapter.settings
    session = ImapSession(
        endpoint,
        settings.imap_timeout_seconds,
        tls,
        guard=guard,
        max_bytes=settings.inbound_max_bytes,
    )
    folders = [imap.mailbox] + ([imap.sent_folder] if imap.sent_folder else [])
    opened: list[str] = []
    try:
        await session.connect()
        for folder in folders:
            await asyncio.to_thread(session.examine, folder)
            opened.append(folder)
    except ImapFailure as failure:
        detail = str(failure)
        if failure.stage == "imap" and len(opened) < len(folders):
            detail = f"cannot open the folder {folders[len(opened)]!r}: {failure}"
        return {"ok": False, "stage": failure.stage, "detail": detail, "opened": opened}
    finally:
        await asyncio.to_thread(session.close)
    return {"ok": True, "stage": "imap", "detail": "signed in; folders opened", "opened": opened}


async def email_test(
    adapter: EmailAdapter, site: Site, *, tls: ssl.SSLContext, guard: OutboundGuard
) -> dict[str, Any]:
    """Both halves; `ok` only when each configured half succeeded."""
    smtp, imap = await asyncio.gather(
        smtp_half(adapter, site), imap_half(adapter, site, tls=tls, guard=guard)
    )
    failed = [
        f"{name}: {half['detail']}"
        for name, half in (("SMTP", smtp), ("IMAP", imap))
        if half is not None and not half["ok"]
    ]
    return {
        "ok": not failed,
        "smtp": smtp,
        "imap": imap,
        "last_error": "; ".join(failed) or None,
    }
