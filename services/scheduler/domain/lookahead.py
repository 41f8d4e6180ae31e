"""How far ahead of their instants ticks are published, from how fast this replica publishes.

Publishing a tick early is harmless (it carries `not_before` = its instant and gateways hold it
until then); publishing it late is the failure. Ticks are published in instant order, so a
stretch of instants carrying more ticks than the replica publishes in that time builds a
backlog, and the look-ahead must cover the largest such backlog in sight. Because the rate is
measured while the replica runs, a slow or busy machine publishes further ahead by itself.
A replica kept from running at all for a while (a starved CPU, a long pause) is not covered
beyond the least look-ahead: growing it after such a stall would also delay how soon every
settings change takes effect (a tick published early keeps the settings it was built with).

Pure: numbers in, numbers out (no clock, no I/O).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_RATE = 2_000.0
"""Ticks a second assumed before anything has been published (a modest machine)."""
SAFETY = 2.0
"""The backlog is covered this many times over: the rate is a recent average, not a promise."""
HALF_LIFE = 60.0
"""Seconds after which a batch counts half as much in the rate."""


def _decay(elapsed: float, half_life: float) -> float:
    return math.pow(0.5, max(elapsed, 0.0) / half_life)


def backlog_seconds(due: Iterable[tuple[float, int]], rate: float) -> float:
    """The longest a tick of `due` would wait behind earlier ones, publishing at `rate` a
    second from `ahead` before each instant: the smallest look-ahead that makes none late.

    `due`: (instant in seconds on any common scale, ticks at it), in instant order. For every
    stretch of instants t_j..t_k, its ticks take (C_k - C_{j-1}) / rate to publish and only
    t_k - t_j passes meanwhile; the answer is the largest difference over all stretches (one
    pass, keeping the smallest start term seen so far).
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    worst = 0.0
    published = 0.0  # seconds of publishing for the ticks before the current instant
    lowest_start: float | None = None
    for instant, count in due:
        start = published - instant
        lowest_start = start if lowest_start is None else min(lowest_start, start)
        published += count / rate
        worst = max(worst, published - instant - lowest_start)
    return worst


@dataclass(frozen=True)
class LookAheadRule:
    """The look-ahead: the backlog times `safety`, plus `floor`, at most `ceiling`.

    `floor` also covers what does not depend on the count (a round trip, a wake-up late);
    `ceiling` bounds how long gateways hold ticks (and how far ahead a replica must build
    them)."""

    floor: float
    ceiling: float
    safety: float = SAFETY

    def __post_init__(self) -> None:
        if self.floor < 0 or self.ceiling < self.floor:
            raise ValueError("need 0 <= floor <= ceiling")

    def seconds(self, due: Iterable[tuple[float, int]], rate: float) -> float:
        """The look-ahead for ticks `due` (as in `backlog_seconds`) at `rate` a second."""
        return min(self.ceiling, self.floor + self.safety * backlog_seconds(due, rate))


@dataclass
class PublishRate:
    """Ticks a second this replica publishes, from the batches it published lately.

    Counts and durations decay with time (`half_life`) and are divided only then, so a batch's
    weight is its size: a thousand ticks taking 70 ms say more than one tick taking a round
    trip. Small batches include a round trip each and make the rate look lower (a longer
    look-ahead: the safe side)."""

    half_life: float = HALF_LIFE
    _ticks: float = 0.0
    _seconds: float = 0.0
    _at: float | None = None

    def observe(self, ticks: int, seconds: float, at: float) -> None:
        """A batch of `ticks` took `seconds` to publish and be acknowledged, ending at `at`
        (monotonic seconds)."""
        if ticks <= 0:
            return
        kept = 1.0 if self._at is None else _decay(at - self._at, self.half_life)
        self._ticks = self._ticks * kept + ticks
        self._seconds = self._seconds * kept + max(seconds, 1e-6)
        self._at = at

    @property
    def per_second(self) -> float:
        """The recent rate (`DEFAULT_RATE` before any batch)."""
        if self._ticks <= 0:
            return DEFAULT_RATE
        return self._ticks / self._seconds
