"""The email section of a site's settings: SMTP and IMAP accounts, sign-in, sessions, limits.

Pure: no I/O.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from shared.domain.email_sign_in import EmailSignIn
from shared.domain.settings_fields import HHMM, HOST, Strict, sealed, valid_email
from shared.domain.settings_windows import Window, check_no_overlap


class SmtpAccount(Strict):
    """Outgoing mail server."""

    host: str | None = Field(default=None, description="SMTP server host name.")
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="STARTTLS (587), implicit TLS (465) or none (local relay)."
    )
    username: str | None = Field(default=None, max_length=320)
    password: str | None = Field(default=None, description="Sealed (encrypted) password.")

    _sealed = field_validator("password")(sealed)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is not None and not HOST.match(value):
            raise ValueError("not a valid host name")
        return value


class ImapAccount(Strict):
    """Incoming mail server (the seed's Send/Receive)."""

    enabled: bool = Field(default=False, description="Use IMAP to receive replies and bounces.")
    host: str | None = None
    port: int = Field(default=993, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str | None = Field(default=None, max_length=320)
    password: str | None = Field(default=None, description="Sealed (encrypted) password.")
    mailbox: str = Field(default="INBOX", min_length=1, max_length=200)
    sent_folder: str | None = Field(
        default=None,
        max_length=200,
        description="Folder where the provider keeps sent mail (e.g. 'Sent Items'); used to "
        "confirm whether a send interrupted by a crash went out before resending it.",
    )

    _sealed = field_validator("password")(sealed)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is not None and not HOST.match(value):
            raise ValueError("not a valid host name")
        return value


EmailProviderPreset = Literal["custom", "google_workspace", "microsoft_365"]

PROVIDER_LIMITS: dict[str, dict[str, int | None]] = {
    # Published sending limits of common providers (domain notes §3.4).
    "custom": {"per_minute": None, "per_day": None},
    "google_workspace": {"per_minute": None, "per_day": 2000},
    "microsoft_365": {"per_minute": 30, "per_day": 10000},
}


class EmailSettings(Strict):
    """The email pages of the wizard."""

    enabled: bool = Field(
        default=True, description="False = the seed's 'Disable email sending and receiving'."
    )
    address: str | None = Field(default=None, description="Practice email address (From).")
    display_name: str | None = Field(default=None, max_length=120)
    smtp: SmtpAccount = SmtpAccount()
    imap: ImapAccount = ImapAccount()
    # Issue 19: password or OAuth 2.0 sign-in for SMTP and IMAP (shared.domain.email_sign_in).
    sign_in: EmailSignIn = EmailSignIn()
    transport: Literal["smtp", "graph"] = Field(
        default="smtp",
        description="smtp (SMTP out, IMAP in); graph: Microsoft Graph sendMail, for Microsoft "
        "365 tenants where SMTP AUTH is off (needs the microsoft_365 sign-in method).",
    )
    mode: Literal["automatic", "manual"] = Field(
        default="automatic",
        description="automatic = 'Send all mail immediately' ticked: send inside the sessions; "
        "manual = nothing goes until someone presses send-now.",
    )
    sessions: list[Window] = Field(
        default_factory=lambda: [
            Window(days=["mon", "tue", "wed", "thu", "fri"], start="08:00", end="18:00")
        ],
        description="Days/times the server sends and receives.",
    )
    check_every_minutes: int = Field(
        default=5, ge=1, le=1440, description="Perform regular checks every X minutes."
    )
    preset_times: list[str] = Field(
        default_factory=list,
        max_length=48,
        description="Specific check times of day (HH:MM) instead of the interval (not "
        "recommended).",
    )
    per_minute: float = Field(
        default=3, ge=0, le=1000, description="Emails per minute (the delay); 0 = no delay."
    )
    daily_cap: int | None = Field(default=None, ge=1, le=1_000_000)
    provider_preset: EmailProviderPreset = Field(
        default="custom", description="Applies a provider's published hard limits."
    )
    open_attachments_directly: bool = Field(
        default=False, description="Off (recommended): attachments stay quarantined until released."
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not valid_email(value):
            raise ValueError("not a valid email address")
        return value

    @field_validator("preset_times")
    @classmethod
    def _presets(cls, values: list[str]) -> list[str]:
        for value in values:
            if not HHMM.match(value):
                raise ValueError(f"{value!r} must be HH:MM")
        if len(set(values)) != len(values):
            raise ValueError("a preset time is listed twice")
        return sorted(values)

    @field_validator("sessions")
    @classmethod
    def _sessions(cls, windows: list[Window]) -> list[Window]:
        return check_no_overlap(windows, "session")

    def hard_limits(self) -> dict[str, int | None]:
        """Per-minute and per-day caps the gateway must never exceed."""
        preset = PROVIDER_LIMITS[self.provider_preset]
        per_day = [v for v in (preset["per_day"], self.daily_cap) if v is not None]
        return {"per_minute": preset["per_minute"], "per_day": min(per_day) if per_day else None}
