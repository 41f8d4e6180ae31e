"""The config service's own process configuration: where alert emails go out
(`STAGGER_ALERT_*`). The common `STAGGER_*` configuration is `shared/config.py`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class AlertConfig(BaseSettings):
    """How alerts reach a group's admins by email."""

    model_config = SettingsConfigDict(env_prefix="STAGGER_ALERT_", extra="ignore", frozen=True)

    smtp_host: str | None = Field(
        default=None,
        description="Operator SMTP server for alert emails. Set: every alert goes out through "
        "it (it keeps working when a group's own account is the thing that fails). Unset: "
        "through the group's own email account (its default SMTP settings). `stagger up` "
        "points it at its SMTP sink.",
    )
    smtp_port: int = Field(default=25, ge=1, le=65535, description="Port of the alert SMTP server.")
    smtp_security: Literal["none", "starttls", "tls"] = Field(
        default="none", description="`none`, `starttls` or `tls` (implicit TLS) to that server."
    )
    smtp_username: str | None = Field(
        default=None, description="User name at the alert SMTP server (unset: no sign-in)."
    )
    smtp_password: SecretStr | None = Field(
        default=None, description="Password at the alert SMTP server."
    )
    smtp_from: str = Field(
        default="Stagger alerts <alerts@stagger.invalid>",
        description="From address of alert emails sent through the alert SMTP server.",
    )
    retry_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How long to wait before trying an alert email again after the SMTP "
        "server refused it (nothing is given up: it waits until it goes).",
    )
    dead_letter_quiet_hours: float = Field(
        default=24.0,
        gt=0,
        le=24 * 90,
        description="A dead-letter alert clears once its consumer has set nothing of the "
        "group's aside for this many hours.",
    )
