"""The scheduler's own configuration, read from `STAGGER_SCHEDULER_*` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SchedulerConfig(BaseSettings):
    """SchedulerConfig of one scheduler replica (`python -m services.scheduler`)."""

    model_config = SettingsConfigDict(env_prefix="STAGGER_SCHEDULER_", extra="ignore", frozen=True)

    account_tick_seconds: float = Field(
        default=1.0,
        ge=0.05,
        le=3600,
        description="Period of the ticks of a provider account in immediate SMS mode; each "
        "tick releases what the account's rate allows in one period.",
    )
    grace_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="A tick whose instant is further in the past than this when its turn "
        "comes (after a restart, a stall or an outage) is skipped, never published late.",
    )
    prepare_ahead_seconds: float = Field(
        default=2.0,
        ge=0,
        le=30,
        description="How long before their instant ticks are built and encoded, so that at "
        "the instant only publishing is left; ticks are built this much minus "
        "PUBLISH_AHEAD_SECONDS (at least 0.5 s) beyond PUBLISH_AHEAD_MAX_SECONDS.",
    )
    publish_ahead_seconds: float = Field(
        default=1.0,
        ge=0,
        le=30,
        description="The least time before their instant ticks are published (with not_before = "
        "the instant; gateways hold them until then). The scheduler publishes further ahead "
        "when the ticks in sight need it at the publish rate it measures (a burst of ticks "
        "sharing one instant, a slow or busy machine), up to PUBLISH_AHEAD_MAX_SECONDS. "
        "0 publishes at the instant.",
    )
    publish_ahead_max_seconds: float = Field(
        default=10.0,
        ge=0,
        le=60,
        description="The most time before their instant ticks are published however slow "
        "publishing is (gateways hold early ticks that long; a tick published early keeps the "
        "settings it was built with). Ticks are built this far ahead plus the preparation "
        "margin. Equal to (or below) PUBLISH_AHEAD_SECONDS: a fixed look-ahead.",
    )
    publish_batch_size: int = Field(
        default=20_000,
        ge=1,
        le=100_000,
        description="Most ticks published as one pipeline (acknowledgements awaited together); "
        "also the most unacknowledged ticks in flight.",
    )
    publish_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How long a tick's JetStream acknowledgement may take before it is "
        "resent once (the tick id makes the resend safe).",
    )
    refresh_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often a replica re-reads settings rows that another replica "
        "sharing its database applied.",
    )
    send_now_budget: int = Field(
        default=100_000,
        ge=1,
        description="Messages one send-now tick may release (hard provider limits, credits "
        "and opt-outs still apply at the gateway).",
    )
    send_now_valid_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="How long a send-now tick stays usable.",
    )
