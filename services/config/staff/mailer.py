"""Sends staff invitations: through the group's own SMTP account when it has one, else the
operator's relay (`STAGGER_STAFF_MAIL_RELAY`; `stagger up` points it at its SMTP sink)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr

import aiosmtplib

from shared.domain.site_settings import EmailSettings
from shared.net.group_smtp import send_via_account
from shared.net.outbound import OutboundGuard
from shared.secrets import SecretBox

log = logging.getLogger(__name__)
TIMEOUT = 20.0


class MailNotSent(Exception):
    """The invitation could not be handed to an SMTP server (the message says why)."""


@dataclass(frozen=True)
class Invitation:
    """What the invitation email says."""

    to: str
    group_name: str
    role: str
    link: str
    hours: float


def compose(invitation: Invitation, sender: str) -> EmailMessage:
    """The invitation email (plain text: the link is the whole point)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = invitation.to
    message["Subject"] = f"You are invited to {invitation.group_name} on Stagger"
    message.set_content(
        f"You have been invited to {invitation.group_name} on Stagger as "
        f"{invitation.role.replace('_', ' ')}.\n\n"
        f"Open this link to choose your password (it works once, for "
        f"{invitation.hours:g} hours):\n\n{invitation.link}\n\n"
        "If you did not expect this, ignore this email.\n"
    )
    return message


class StaffMailer:
    """Hands invitations to an SMTP server."""

    def __init__(
        self, box: SecretBox, guard: OutboundGuard, relay: str | None, sender: str
    ) -> None:
        self.box = box
        self.guard = guard
        self.relay = relay
        self.sender = sender

    async def send(self, invitation: Invitation, group_email: EmailSettings | None) -> str:
        """Send; returns how ("group_account" or "smtp_sink"). MailNotSent if it could not."""
        smtp = group_email.smtp if group_email and group_email.enabled else None
        if smtp is not None and smtp.host and group_email and group_email.address:
            sender = formataddr((group_email.display_name or "", group_email.address))
            await self._via_account(compose(invitation, sender), group_email)
            return "group_account"
        if not self.relay:
            raise MailNotSent(
                "the group has no email account and no staff mail relay is configured "
                "(STAGGER_STAFF_MAIL_RELAY)"
            )
        host, _, port = self.relay.rpartition(":")
        try:
            await aiosmtplib.send(
                compose(invitation, self.sender),
                hostname=host or "127.0.0.1",
                port=int(port),
                timeout=TIMEOUT,
                start_tls=False,
                use_tls=False,
            )
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            raise MailNotSent(f"the staff mail relay {self.relay} refused: {exc}") from exc
        return "smtp_sink"

    async def _via_account(self, message: EmailMessage, email: EmailSettings) -> None:
        account = email.smtp
        try:
            await send_via_account(message, account, self.guard, self.box, TIMEOUT)
        except Exception as exc:
            raise MailNotSent(f"the group's SMTP server {account.host} refused: {exc}") from exc
