"""Configuration of the SMS provider simulator, read from `STAGGER_SIM_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SimulatorConfig(BaseSettings):
    """SimulatorConfig of one simulator process (`python -m services.sms_provider_sim`)."""

    model_config = SettingsConfigDict(env_prefix="STAGGER_SIM_", extra="ignore", frozen=True)

    port: int = Field(
        default=8090, ge=0, le=65535, description="Port the simulator's HTTP API listens on."
    )
    host: str = Field(default="127.0.0.1", description="Interface the simulator binds to.")
    state_file: Path | None = Field(
        default=None,
        description="JSON file keeping accounts, balances and messages across restarts "
        "(written atomically). Unset: state lives in memory only.",
    )
    seed: int | None = Field(
        default=None,
        description="Seed of the fault-injection random generator, for repeatable runs. "
        "Unset: a random seed.",
    )
    default_account: str = Field(
        default="sim-default",
        min_length=1,
        max_length=100,
        description="Name of the account created at start-up.",
    )
    default_api_key: SecretStr = Field(
        default=SecretStr("sim-dev-key"),
        description="API key of the default account (a well-known development key).",
    )
    default_credits: int = Field(
        default=1000,
        ge=0,
        description="Credits of the default account when it is first created.",
    )
    default_webhook_url: str | None = Field(
        default=None,
        description="Where the default account's delivery receipts and inbound replies are "
        "POSTed. Unset: no webhooks unless a message carries a `callback_url`.",
    )
    default_webhook_secret: SecretStr = Field(
        default=SecretStr("sim-dev-webhook-secret"),
        description="HMAC-SHA256 key signing the default account's webhooks (the public "
        "development secret; other accounts get their own).",
    )
    receipt_delay_seconds: float = Field(
        default=0.5,
        ge=0,
        description="Seconds between accepting a message and its delivery receipt.",
    )

    @field_validator("default_webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if not value:
            return None  # an empty variable means "no webhook"
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL")
        return value
