"""Sign-in throttling maths (pure): how long a key must wait after too many failures.

Each key (an account's email, a client address) has a limit of failed attempts within a
sliding window. Once the limit is reached, the next attempt waits until enough failures have
aged out of the window that one more would be under the limit again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Limit:
    """At most `failures` failed attempts per `window`."""

    failures: int
    window: timedelta

    def __post_init__(self) -> None:
        if self.failures < 1 or self.window <= timedelta(0):
            raise ValueError("a limit needs at least one failure and a positive window")


def recent(failures: Iterable[datetime], now: datetime, limit: Limit) -> list[datetime]:
    """The failures still inside the window ending at `now`, oldest first."""
    start = now - limit.window
    return sorted(t for t in failures if start < t <= now)


def retry_after(failures: Iterable[datetime], now: datetime, limit: Limit) -> timedelta | None:
    """None if an attempt may go ahead now, else how long until it may."""
    inside = recent(failures, now, limit)
    if len(inside) < limit.failures:
        return None
    # Once this failure leaves the window, fewer than `limit.failures` remain.
    pivot = inside[len(inside) - limit.failures]
    return pivot + limit.window - now


def longest_wait(waits: Iterable[timedelta | None]) -> timedelta | None:
    """The wait that binds when several limits apply (None if none does)."""
    found = [w for w in waits if w is not None]
    return max(found) if found else None
