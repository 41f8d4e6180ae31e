"""Per-account token buckets: `rate_per_second` tokens a second, burst equal to the rate."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """A token bucket. Capacity is at least 1, or a rate below 1/s could never send."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self._clock = clock
        self._tokens = self.capacity
        self._updated = clock()

    def take(self) -> float:
        """Take one token: 0.0 when granted, else the seconds until one will be available."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


class RateLimiter:
    """One bucket per account, rebuilt (full) when the account's rate changes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, account: str, rate: float) -> float:
        """See `TokenBucket.take`."""
        bucket = self._buckets.get(account)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[account] = TokenBucket(rate, self._clock)
        return bucket.take()

    def reset(self) -> None:
        """Forget every bucket (all accounts start full again)."""
        self._buckets.clear()
