"""The SMTP sink's configuration, read from `STAGGER_SMTP_SINK_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SinkConfig(BaseSettings):
    """SinkConfig of the local SMTP sink (`python -m services.smtp_sink`)."""

    model_config = SettingsConfigDict(env_prefix="STAGGER_SMTP_SINK_", extra="ignore", frozen=True)

    host: str = Field(default="127.0.0.1", description="Interface the sink listens on.")
    port: int = Field(default=2525, ge=1, le=65535, description="Port the sink listens on.")
    dir: Path | None = Field(
        default=None,
        description="Where accepted mail is kept: a Maildir (`maildir/`) and one JSON line per "
        "message (`received.jsonl`). Unset: `<var_dir>/smtp-sink`.",
    )
    store: bool = Field(
        default=True,
        description="Keep each message in the Maildir; false records only the JSON line.",
    )
    username: str | None = Field(
        default=None, description="When set (with the password), AUTH is required."
    )
    password: SecretStr | None = Field(default=None, description="Password AUTH must present.")
    tls: Literal["none", "starttls", "tls"] = Field(
        default="none",
        description="`none`, `starttls` (offered and required) or `tls` (implicit); the last "
        "two need the certificate and key below.",
    )
    tls_cert: Path | None = Field(default=None, description="PEM certificate for TLS.")
    tls_key: Path | None = Field(default=None, description="PEM private key for TLS.")
    reply_delay_seconds: float = Field(
        default=0.0,
        ge=0,
        le=60,
        description="Wait this long after taking a message before answering 250, like a slow "
        "provider (widens the window a crash can fall into).",
    )
    reject_recipients: str | None = Field(
        default=None,
        description="Regular expression; recipients matching it are refused with 550 5.1.1.",
    )
    sent_imap_url: str | None = Field(
        default=None,
        description="`imap://user:password@host:port/Folder`: append every accepted message to "
        "that IMAP folder before answering, as Microsoft 365 and Gmail file submitted mail in "
        "Sent (lets the gateway reconcile after a crash).",
    )
    pipelining: bool = Field(
        default=True,
        description="Offer PIPELINING (RFC 2920) in the EHLO reply, as Gmail, Microsoft 365 and "
        "Postfix do; off: a server that answers one command at a time.",
    )
    max_message_bytes: int = Field(
        default=35 * 1024 * 1024, ge=1024, description="Largest message accepted (SIZE)."
    )

    @model_validator(mode="after")
    def _tls_files(self) -> SinkConfig:
        if self.tls != "none" and (self.tls_cert is None or self.tls_key is None):
            raise ValueError("STAGGER_SMTP_SINK_TLS needs TLS_CERT and TLS_KEY")
        if (self.username is None) != (self.password is None):
            raise ValueError("set both STAGGER_SMTP_SINK_USERNAME and _PASSWORD, or neither")
        return self
