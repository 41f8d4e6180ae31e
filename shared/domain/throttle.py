"""Throttle maths: GCRA reservations, sliding-window checks, rolling caps and back-off."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Reservation:
    """Start instants granted to each send, and the limiter's new theoretical arrival time."""

    slots: tuple[datetime, ...]
    new_tat: datetime


def reserve(
    tat: datetime | None, now: datetime, count: int, interval: timedelta, burst: int = 1
) -> Reservation:
    """Reserve `count` sends with GCRA ("virtual scheduling").

    The limit: at most `burst` sends at the same instant and, in steady state, one per
    `interval`. Guarantee: in any window of length W there are at most
    floor(W / interval) + burst sends. `tat` is the theoretical arrival time kept by the caller
    (None for a limiter that has never sent). Each slot is the earliest instant >= `now` the
    send may start; slots are in order.
    """
    if interval <= timedelta(0):
        raise ValueError("interval must be positive")
    if burst < 1:
        raise ValueError("burst must be at least 1")
    if count < 0:
        raise ValueError("count must not be negative")
    tolerance = (burst - 1) * interval
    # A TAT in the past carries no credit beyond the burst: the limiter restarts from now.
    theoretical = now if tat is None or tat < now else tat
    slots = tuple(max(now, theoretical + i * interval - tolerance) for i in range(count))
    return Reservation(slots=slots, new_tat=theoretical + count * interval)


def max_in_any_window(instants: Sequence[datetime], window: timedelta) -> int:
    """The most instants found in any half-open window [t, t + window)."""
    if window <= timedelta(0):
        raise ValueError("window must be positive")
    ordered = sorted(instants)
    best = 0
    first = 0
    for last, instant in enumerate(ordered):
        while ordered[first] <= instant - window:
            first += 1
        best = max(best, last - first + 1)
    return best


@dataclass(frozen=True)
class RollingCap:
    """At most `limit` sends in any rolling `period` (e.g. 2,000 a rolling 24 hours).

    A send at t counts until t + period: it frees its place at exactly t + period.
    `past` arguments are earlier send instants, sorted ascending.
    """

    limit: int
    period: timedelta

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("limit must be at least 1")
        if self.period <= timedelta(0):
            raise ValueError("period must be positive")

    def used(self, past: Sequence[datetime], now: datetime) -> int:
        """Sends in (now - period, now] that still count."""
        return bisect.bisect_right(past, now) - bisect.bisect_right(past, now - self.period)

    def available(self, past: Sequence[datetime], now: datetime) -> int:
        """How many more sends may go at `now`."""
        return max(0, self.limit - self.used(past, now))

    def next_free(self, past: Sequence[datetime], now: datetime) -> datetime:
        """The earliest instant >= now at which one more send may go."""
        counted = past[
            bisect.bisect_right(past, now - self.period) : bisect.bisect_right(past, now)
        ]
        if len(counted) < self.limit:
            return now
        # Enough of the oldest counted sends must expire to leave one place free.
        return counted[len(counted) - self.limit] + self.period

    def plan(self, past: Sequence[datetime], now: datetime, count: int) -> tuple[datetime, ...]:
        """Earliest instants for `count` more sends, each counting against the cap."""
        if count < 0:
            raise ValueError("count must not be negative")
        history = list(past[: bisect.bisect_right(past, now)])
        slots: list[datetime] = []
        for _ in range(count):
            at = now if len(history) < self.limit else max(now, history[-self.limit] + self.period)
            history.append(at)
            slots.append(at)
        return tuple(slots)


def backoff_delay(
    attempt: int,
    base: float,
    cap: float,
    retry_after: float | None,
    jitter_fraction: float,
    rand: float,
) -> float:
    """Seconds to wait before retry number `attempt` (1 for the first retry).

    Exponential: base * 2**(attempt - 1), at most `cap`, then shortened by up to
    `jitter_fraction` of itself (`rand` in [0, 1) chooses how much, so callers pass their own
    randomness and tests stay exact). A server's Retry-After is a floor: the result is never
    shorter, even when it exceeds `cap`, because retrying earlier is refused anyway.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    if base <= 0 or cap < base:
        raise ValueError("need 0 < base <= cap")
    if not 0 <= jitter_fraction <= 1:
        raise ValueError("jitter_fraction must be in [0, 1]")
    if not 0 <= rand < 1:
        raise ValueError("rand must be in [0, 1)")
    if retry_after is not None and retry_after < 0:
        raise ValueError("retry_after must not be negative")
    # Compare exponents first: 2**(attempt - 1) overflows a float long before attempts run out.
    exponential = attempt - 1 < math.log2(cap / base)
    delay = min(cap, base * 2.0 ** (attempt - 1)) if exponential else cap
    delay *= 1 - jitter_fraction * rand
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
