"""Alert emails: composed from an alert event, handed to the operator's alert SMTP server
(`STAGGER_ALERT_SMTP_*`) when one is configured, else to the group's own email account.

The body is the alert's summary (already free of secrets, see `domain.alerts.redact`), the
site, the provider's top-up page when there is one, and a link to the dashboard; never an
account's credentials.
"""

from __future__ import annotations

import hashlib
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

import aiosmtplib

from services.config.adapters.alerts import Pending
from services.config.config import AlertConfig
from shared.domain.site_settings import EmailSettings
from shared.net.group_smtp import send_via_account
from shared.net.outbound import OutboundGuard
from shared.secrets import SecretBox

TIMEOUT = 20.0

TITLES = {
    "sms_held": "SMS sending is held",
    "low_credit": "SMS credit is low",
    "topup_needed": "SMS credit must be bought",
    "email_sign_in": "An email account cannot sign in",
    "dead_letters": "Messages could not be processed",
    "batch_late": "A batch will not fit its sessions",
}


class MailNotSent(Exception):
    """No SMTP server took the alert email (the message says why)."""


def compose(
    alert: Pending, group_name: str, to: str, sender: str, dashboard_url: str
) -> EmailMessage:
    """The alert email for one recipient (plain text)."""
    title = TITLES.get(alert.kind, alert.kind.replace("_", " "))
    cleared = alert.transition == "cleared"
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = f"{'Cleared' if cleared else 'Alert'}: {title} ({group_name})"
    message["Date"] = format_datetime(alert.created_at)
    # One id per event and recipient: a receiving system can spot a copy.
    digest = hashlib.sha256(f"{alert.event_id}:{to}".encode()).hexdigest()[:24]
    message["Message-ID"] = f"<alert-{digest}@stagger.invalid>"
    message["X-Stagger-Alert"] = f"{alert.transition}; {alert.kind}; {alert.alert_id}"
    lines = [
        f"{'Cleared' if cleared else 'Alert'} for {group_name}: {title.lower()}.",
        "",
        alert.summary,
        "",
    ]
    if alert.site_id:
        lines.append(f"Site: {alert.site_id}")
    if alert.topup_url and not cleared:
        lines.append(f"Buy credit here: {alert.topup_url}")
    lines += [
        f"When: {alert.created_at.isoformat(timespec='seconds')}",
        f"Dashboard: {dashboard_url}",
        "",
        "You receive this because you are a group admin in Stagger. You are told once when "
        "a condition begins and once when it ends.",
    ]
    message.set_content("\n".join(lines) + "\n")
    return message


class AlertMailer:
    """Hands alert emails to an SMTP server."""

    def __init__(self, config: AlertConfig, box: SecretBox, guard: OutboundGuard) -> None:
        self.config = config
        self.box = box
        self.guard = guard

    def sender(self, group_email: EmailSettings | None) -> str:
        """The From address: the operator's, or the group account's own address."""
        if self.config.smtp_host or group_email is None or not group_email.address:
            return self.config.smtp_from
        return formataddr((group_email.display_name or "", group_email.address))

    async def send(self, message: EmailMessage, group_email: EmailSettings | None) -> str:
        """Send; returns how (`operator_smtp` or `group_account`). MailNotSent if not taken."""
        if self.config.smtp_host:
            await self._via_operator(message)
            return "operator_smtp"
        smtp = group_email.smtp if group_email and group_email.enabled else None
        if group_email is None or smtp is None or not smtp.host or not group_email.address:
            raise MailNotSent(
                "the group has no email account and no alert SMTP server is configured "
                "(STAGGER_ALERT_SMTP_HOST)"
            )
        await self._via_account(message, group_email)
        return "group_account"

    async def _via_operator(self, message: EmailMessage) -> None:
        c = self.config
        password = c.smtp_password.get_secret_value() if c.smtp_password else None
        try:
            await aiosmtplib.send(
                message,
                hostname=c.smtp_host,
                port=c.smtp_port,
                timeout=TIMEOUT,
                use_tls=c.smtp_security == "tls",
                start_tls=c.smtp_security == "starttls",
                username=c.smtp_username if password else None,
                password=password,
            )
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            raise MailNotSent(f"the alert SMTP server {c.smtp_host} refused: {exc}") from exc

    async def _via_account(self, message: EmailMessage, email: EmailSettings) -> None:
        account = email.smtp
        try:
            await send_via_account(message, account, self.guard, self.box, TIMEOUT)
        except Exception as exc:
            raise MailNotSent(f"the group's SMTP server {account.host} refused: {exc}") from exc
