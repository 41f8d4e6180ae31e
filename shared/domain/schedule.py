"""A site's sending schedule and the paces at which messages leave inside it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

from shared.domain.open_time import WeeklyCalendar
from shared.domain.wallclock import resolve_tz
from shared.domain.weekly import DateClosure, WeeklyWindow


@dataclass(frozen=True)
class Schedule:
    """Delivery sessions, blackout windows and closed dates of one site, in its time zone."""

    sessions: tuple[WeeklyWindow, ...]
    blackouts: tuple[WeeklyWindow, ...]
    closures: tuple[DateClosure, ...]
    tz_name: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "sessions", tuple(self.sessions))
        object.__setattr__(self, "blackouts", tuple(self.blackouts))
        object.__setattr__(self, "closures", tuple(self.closures))
        resolve_tz(self.tz_name)  # fail on an unknown zone now, not at the first forecast

    @property
    def tz(self) -> ZoneInfo:
        """The site's IANA zone."""
        return resolve_tz(self.tz_name)

    def calendar(self) -> WeeklyCalendar:
        """A fresh calendar of this schedule's open time."""
        return WeeklyCalendar(self.sessions, self.blackouts, self.closures, self.tz)


@dataclass(frozen=True)
class StaggerPace:
    """Staggered SMS: `per_tick` messages at each tick, one tick every `every` of open time.

    The grid of each open interval starts `offset` after it opens (`shared.domain.ticks`).
    """

    every: timedelta
    per_tick: int = 1
    offset: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if self.every <= timedelta(0):
            raise ValueError("stagger interval must be positive")
        if self.per_tick < 1:
            raise ValueError("per_tick must be at least 1")
        if not timedelta(0) <= self.offset < self.every:
            raise ValueError("grid offset must lie in [0, every)")


@dataclass(frozen=True)
class RatePace:
    """Continuous sending inside open time at `per_minute` messages a minute.

    Sends fall at s + o, s + o + step, ... inside each open interval [s, e), where step is
    60/per_minute seconds rounded to the microsecond and o the grid `offset` (the offset of
    the site's email cycles, so cycles and slots share one anchor). With `daily_cap`, only
    the first `daily_cap` of those slots in each local calendar day are used.
    """

    per_minute: float
    daily_cap: int | None = None
    offset: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if not math.isfinite(self.per_minute) or self.per_minute <= 0:
            raise ValueError("per_minute must be a positive number")
        if self.daily_cap is not None and self.daily_cap < 1:
            raise ValueError("daily_cap must be at least 1 (disable the channel instead)")
        if self.step <= timedelta(0):
            raise ValueError("per_minute is too large to pace at microsecond resolution")
        if self.offset < timedelta(0):
            raise ValueError("grid offset must not be negative")

    @property
    def step(self) -> timedelta:
        """Real time between two sends."""
        return timedelta(microseconds=round(60_000_000 / self.per_minute))


@dataclass(frozen=True)
class ImmediatePace:
    """Everything goes at the first open instant."""


Pace = StaggerPace | RatePace | ImmediatePace
