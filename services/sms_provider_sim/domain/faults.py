"""Injected faults for `POST /v1/messages`: latency, 429s, 5xx, timeouts after accept, no credit,
answers delayed after the debit.

Decisions come from one seeded generator, and every request draws the same four numbers
whatever happens to it (five with `answer_delay_ms`), so a given seed, configuration and
request sequence always yields the same faults.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator


class FaultConfig(BaseModel):
    """Body of `PUT /v1/admin/faults` (a full replacement: omitted fields take defaults)."""

    model_config = ConfigDict(extra="forbid")

    seed: int | None = Field(default=None, description="Reseed the fault generator.")
    latency_ms: tuple[int, int] = Field(
        default=(0, 0), description="Extra latency, uniform in [min, max] milliseconds."
    )
    answer_delay_ms: tuple[int, int] = Field(
        default=(0, 0),
        description="Delay between accepting (and debiting) a message and answering, uniform "
        "in [min, max] milliseconds: answers of concurrent sends overtake one another.",
    )
    rate_429: float = Field(default=0.0, ge=0, le=1, description="Share answered 429.")
    retry_after_seconds: int = Field(
        default=1, ge=0, le=3600, description="Retry-After of injected 429s."
    )
    rate_5xx: float = Field(default=0.0, ge=0, le=1, description="Share answered 503.")
    rate_timeout_after_accept: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share stored and debited, then dropped without any response.",
    )
    timeout_hold_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="How long a dropped request is held open before the connection is closed.",
    )
    exhaust_credits: bool = Field(
        default=False, description="Every new message is refused 402 as if the balance were 0."
    )
    duplicate_receipt_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of delivery receipts delivered a second time after the first "
        "(drawn from a generator of its own, so send faults keep their sequence).",
    )

    @field_validator("latency_ms", "answer_delay_ms")
    @classmethod
    def _latency_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if low < 0 or high < low or high > 60_000:
            raise ValueError("must be [min, max] with 0 <= min <= max <= 60000")
        return value


@dataclass(frozen=True)
class Decision:
    """What happens to one request."""

    latency_seconds: float
    reject_429: bool
    reject_5xx: bool
    timeout_after_accept: bool
    answer_delay_seconds: float = 0.0


class FaultInjector:
    """The active fault configuration and its seeded generator."""

    def __init__(self, default_seed: int | None) -> None:
        self.default_seed = default_seed
        self.config = FaultConfig()
        self._rng = random.Random(default_seed)
        self._receipt_rng = random.Random(default_seed)

    def configure(self, config: FaultConfig) -> None:
        """Replace the configuration; a seed restarts the random sequence."""
        self.config = config
        if config.seed is not None:
            self._rng.seed(config.seed)
            self._receipt_rng.seed(config.seed)

    def clear(self) -> None:
        """No faults, and the generator back at the start-up seed."""
        self.config = FaultConfig()
        self._rng.seed(self.default_seed)

    def duplicate_receipt(self) -> bool:
        """Whether the next receipt is delivered twice."""
        return self._receipt_rng.random() < self.config.duplicate_receipt_rate

    def draw(self) -> Decision:
        """The faults for the next request (always four draws, for repeatability)."""
        cfg = self.config
        u_latency, u_429, u_5xx, u_timeout = (self._rng.random() for _ in range(4))
        low, high = cfg.latency_ms
        # A fifth draw only when configured: seeds keep giving the faults they gave before.
        delay = 0.0
        if cfg.answer_delay_ms[1] > 0:
            first, last = cfg.answer_delay_ms
            delay = (first + (last - first) * self._rng.random()) / 1000
        return Decision(
            latency_seconds=(low + (high - low) * u_latency) / 1000,
            reject_429=u_429 < cfg.rate_429,
            reject_5xx=u_5xx < cfg.rate_5xx,
            timeout_after_accept=u_timeout < cfg.rate_timeout_after_accept,
            answer_delay_seconds=delay,
        )
