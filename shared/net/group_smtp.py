"""Sending one message through a group's own SMTP account (password sign-in), its host judged
like every outbound connection: what the staff invitations and the alerts both do."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from shared.domain.settings_email import SmtpAccount
from shared.net.outbound import OutboundGuard
from shared.secrets import SecretBox


async def send_via_account(
    message: EmailMessage,
    account: SmtpAccount,
    guard: OutboundGuard,
    box: SecretBox,
    seconds: float,
) -> None:
    """Send `message` through `account`, each step bounded by `seconds` (raises what the
    connection or the server raises)."""
    assert account.host is not None
    sock = await guard.connect(account.host, account.port, seconds)
    smtp = aiosmtplib.SMTP(
        hostname=account.host,
        sock=sock,
        timeout=seconds,
        use_tls=account.security == "tls",
        start_tls=account.security == "starttls",
    )
    async with smtp:
        if account.username and account.password:
            await smtp.login(account.username, box.open(account.password))
        await smtp.send_message(message)
