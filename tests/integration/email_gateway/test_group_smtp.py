"""Staff invitations and alerts sent through a group's own SMTP account: signed in with its
sealed password, the host judged by the outbound guard (`shared.net.group_smtp`)."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib
import pytest

from shared.domain.settings_email import SmtpAccount
from shared.net.group_smtp import send_via_account
from shared.net.outbound import DestinationRefused, OutboundGuard
from shared.secrets import SecretBox, generate_key


def _letter() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "practice@smile.example"
    message["To"] = "admin@smile.example"
    message["Subject"] = "Sending is held"
    message["Message-ID"] = "<alert-1@smile.example>"
    message.set_content("Credits ran out.")
    return message


async def test_the_account_signs_in_with_its_sealed_password_and_sends(smtp_servers) -> None:
    server = smtp_servers(username="front", password="right")
    box = SecretBox([generate_key().encode()])
    account = SmtpAccount(
        host="127.0.0.1",
        port=server.port,
        security="none",
        username="front",
        password=box.seal("right"),
    )
    await send_via_account(_letter(), account, OutboundGuard.parse("127.0.0.1/32"), box, 10)
    assert server.message_ids() == {"<alert-1@smile.example>": 1}


async def test_a_wrong_password_is_refused_and_nothing_is_sent(smtp_servers) -> None:
    server = smtp_servers(username="front", password="right")
    box = SecretBox([generate_key().encode()])
    account = SmtpAccount(
        host="127.0.0.1",
        port=server.port,
        security="none",
        username="front",
        password=box.seal("wrong"),
    )
    with pytest.raises(aiosmtplib.SMTPAuthenticationError, match="535"):
        await send_via_account(_letter(), account, OutboundGuard.parse("127.0.0.1/32"), box, 10)
    assert server.received == []


async def test_a_host_the_guard_does_not_allow_is_never_connected_to(smtp_servers) -> None:
    server = smtp_servers()
    box = SecretBox([generate_key().encode()])
    account = SmtpAccount(host="127.0.0.1", port=server.port, security="none")
    with pytest.raises(DestinationRefused):
        await send_via_account(_letter(), account, OutboundGuard.parse(None), box, 10)
    assert server.received == []
