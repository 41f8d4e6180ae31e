"""The email gateway's own configuration, read from `STAGGER_EMAIL_GATEWAY_*` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.dispatch.settings_fields import retention_days_field


class EmailGatewayConfig(BaseSettings):
    """EmailGatewayConfig of one email gateway replica (`python -m services.email_gateway`)."""

    model_config = SettingsConfigDict(
        env_prefix="STAGGER_EMAIL_GATEWAY_", extra="ignore", frozen=True
    )

    smtp_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="How long one SMTP step (connect, TLS, login, each command, the message "
        "data) may take before it counts as a connection failure.",
    )
    smtp_connections_per_account: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Most SMTP connections one replica keeps open to one account; connections "
        "are reused for the sends of a cycle. Microsoft 365 accepts at most 3 at once per "
        "mailbox (more get 432 4.3.2, retried), counting every replica.",
    )
    smtp_pipelining: bool = Field(
        default=True,
        description="Where the SMTP server offers PIPELINING (RFC 2920), send MAIL, RCPT and DATA "
        "in one write: two round trips a message instead of four. Off: one command at a time.",
    )
    smtp_idle_seconds: float = Field(
        default=60.0,
        gt=0,
        description="An SMTP connection unused for this long is closed (QUIT).",
    )
    local_hostname: str | None = Field(
        default=None,
        description="Name the gateway gives in EHLO. Unset: the machine's fully qualified name.",
    )
    ca_file: Path | None = Field(
        default=None,
        description="Extra CA certificates (PEM) trusted for SMTP and IMAP TLS, e.g. a private "
        "relay's. The system's CAs are always trusted.",
    )
    imap_timeout_seconds: float = Field(
        default=30.0, gt=0, le=600, description="How long one IMAP step may take."
    )
    soft_bounce_threshold: int = Field(
        default=3,
        ge=0,
        le=1000,
        description="Soft bounces (temporary failures, 4.x.x) after which an address goes on "
        "the group's email suppression list, as a hard bounce does at once; 0 only counts them.",
    )
    lease_seconds: float = Field(
        default=60.0,
        ge=1,
        description="How long a claimed message stays reserved for this replica without renewal "
        "(renewed every third of it while the replica lives); after a crash another replica "
        "reconciles the message only once the lease has run out.",
    )
    recovery_seconds: float = Field(
        default=5.0, gt=0, description="How often expired leases are looked for and reconciled."
    )
    reconcile_grace_seconds: float = Field(
        default=5.0,
        ge=0,
        description="After an SMTP transaction broke off once the message data was sent, how "
        "long to wait before searching the account's Sent folder for it (providers file sent "
        "mail there shortly after accepting it).",
    )
    max_attempts: int = Field(
        default=8,
        ge=1,
        le=100,
        description="SMTP attempts of one message (temporary failures: 4xx replies, lost "
        "connections, refused login, TLS failures) before it ends failed.",
    )
    retention_days: float = retention_days_field()
    retry_base_seconds: float = Field(
        default=30.0, gt=0, description="Back-off after the first temporary failure; doubles."
    )
    retry_cap_seconds: float = Field(
        default=1800.0, gt=0, description="Longest back-off between two attempts."
    )
    parallel_sends: int = Field(
        default=16, ge=1, le=512, description="SMTP transactions one replica runs at once."
    )
    quarantine_dir: Path | None = Field(
        default=None,
        description="Where inbound attachments are kept, content-addressed (`<sha256>`, mode "
        "0600). Unset: `<var_dir>/quarantine`.",
    )
    attachment_max_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=0,
        description="Largest inbound attachment kept in quarantine; larger ones are listed in "
        "the inbound event but not stored.",
    )
    inbound_max_bytes: int = Field(
        default=25 * 1024 * 1024,
        ge=1024,
        description="Largest inbound message fetched whole; a larger one is recorded from its "
        "headers only (`truncated`) and its attachments are not stored.",
    )
    inbound_backfill_days: int = Field(
        default=7,
        ge=0,
        le=365,
        description="The first poll of a mailbox (or after its UIDVALIDITY changed) records "
        "messages received in the last N days; older mail is left alone.",
    )
    inbound_batch: int = Field(
        default=200, ge=1, le=10_000, description="Most messages recorded per mailbox per poll."
    )

    @model_validator(mode="after")
    def _lease_outlives_renewal(self) -> EmailGatewayConfig:
        if self.recovery_seconds >= self.lease_seconds:
            raise ValueError("recovery_seconds must be shorter than lease_seconds")
        return self

    def quarantine_path(self, var_dir: Path) -> Path:
        """The quarantine directory for a var dir."""
        return (self.quarantine_dir or var_dir / "quarantine").expanduser().resolve()
