"""The SMS gateway's process configuration, read from `STAGGER_SMS_GATEWAY_*` variables.

Provider accounts, rates, thresholds and keywords are per-site settings (events from the
config service); these are the knobs of one gateway replica.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.dispatch.settings_fields import retention_days_field
from shared.dispatch.tuning import EngineTuning


class GatewayConfig(BaseSettings):
    """Configuration of one SMS gateway replica (`python -m services.sms_gateway`)."""

    model_config = SettingsConfigDict(
        env_prefix="STAGGER_SMS_GATEWAY_", extra="ignore", frozen=True
    )

    http_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description="How long one provider API call may take. A send that gets no answer in "
        "time is uncertain: it is looked up by reference, never re-sent blindly.",
    )
    max_connections: int = Field(
        default=64, ge=1, le=1000, description="HTTP connections to providers, per replica."
    )
    send_process: bool = Field(
        default=True,
        description="Make the provider send calls in a child process (its own interpreter "
        "and HTTP client), so that they and the gateway's queue and ledger work use two "
        "cores; costs about 45 MB of memory. Off: every call from the gateway's own process.",
    )
    lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long a replica holds a message it is sending; after a crash another "
        "replica reconciles the message with the provider once the lease has expired.",
    )
    recovery_seconds: float = Field(
        default=5.0, gt=0, description="How often expired leases are looked for."
    )
    max_attempts: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Provider attempts per message (429, 5xx, no answer) before it fails "
        "with the reason.",
    )
    retry_base_seconds: float = Field(
        default=2.0, gt=0, description="First back-off after a transient provider error."
    )
    retry_cap_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Longest back-off (a provider's Retry-After may exceed it).",
    )
    parallel_sends: int = Field(
        default=16, ge=1, le=1000, description="Provider calls in flight per replica."
    )
    tick_workers: int = Field(
        default=8, ge=1, le=256, description="Ticks worked on at once per replica."
    )
    retention_days: float = retention_days_field()
    webhook_tolerance_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Signed webhooks whose timestamp is further than this from our clock are "
        "refused (401), so a captured request cannot be replayed.",
    )
    webhook_base_url: str | None = Field(
        default=None,
        description="Base URL providers reach this gateway's webhooks at (Twilio status "
        "callbacks are sent there and signatures are checked against it). Unset: "
        "http://<STAGGER_HTTP_HOST>:<STAGGER_SMS_GATEWAY_HTTP_PORT>.",
    )
    default_sender_id: str = Field(
        default="Stagger",
        min_length=1,
        max_length=15,
        description="Sender used with the simulator when a site sets no sender ID (Twilio "
        "needs the site's own number).",
    )
    balance_report_seconds: float = Field(
        default=2.0,
        ge=0,
        description="Balance events after sends are coalesced to one per account in this "
        "period (0: one after every send).",
    )
    report_lag_seconds: float = Field(
        default=120.0,
        gt=0,
        description="How long after an attempt a provider whose reports lag (Vonage, "
        "MessageMedia) may still not list a message it has: until then a lookup that does not "
        "find it cannot tell, and nothing is sent again.",
    )
    resume_poll_seconds: float = Field(
        default=2.0,
        gt=0,
        description="While an account is held, how often its balance is asked for (on its "
        "ticks and receipts) so that sending resumes by itself once credits return.",
    )

    def engine(self) -> EngineTuning:
        """The delivery engine's knobs."""
        return EngineTuning(
            lease_seconds=self.lease_seconds,
            recovery_seconds=self.recovery_seconds,
            parallel_sends=self.parallel_sends,
            tick_workers=self.tick_workers,
            max_attempts=self.max_attempts,
            retry_base_seconds=self.retry_base_seconds,
            retry_cap_seconds=self.retry_cap_seconds,
            retention_days=self.retention_days,
        )
