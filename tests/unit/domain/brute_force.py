"""Slow reference implementations for the forecast tests: walk every single send slot."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from shared.domain.open_time import iter_open_intervals
from shared.domain.schedule import RatePace, Schedule, StaggerPace
from shared.domain.wallclock import to_wall


def brute_slots(
    schedule: Schedule, pace: StaggerPace | RatePace, start: datetime
) -> Iterator[datetime]:
    """Every slot at or after `start`, one by one, with daily caps applied by local date."""
    step = pace.every if isinstance(pace, StaggerPace) else pace.step
    cap = pace.daily_cap if isinstance(pace, RatePace) else None
    used: dict[date, int] = {}
    intervals = iter_open_intervals(
        schedule.sessions, schedule.blackouts, schedule.closures, schedule.tz_name, start
    )
    for begin, end in intervals:
        # Each open interval's grid starts the pace's offset after it opens.
        tick = begin + pace.offset
        while tick < end:
            if tick >= start:
                if cap is None:
                    yield tick
                else:
                    day = to_wall(tick, schedule.tz).date()
                    if used.get(day, 0) < cap:
                        used[day] = used.get(day, 0) + 1
                        yield tick
            tick += step


def brute_capacity(
    schedule: Schedule, pace: StaggerPace | RatePace, start: datetime, end: datetime
) -> int:
    """Sends in [start, end), counted slot by slot."""
    per_slot = pace.per_tick if isinstance(pace, StaggerPace) else 1
    count = 0
    for slot in brute_slots(schedule, pace, start):
        if slot >= end:
            break
        count += 1
    return count * per_slot


@dataclass(frozen=True)
class BruteForecast:
    first_send: datetime | None
    last_send: datetime | None
    fit_within_horizon: int


def brute_force_forecast(
    schedule: Schedule,
    pace: StaggerPace | RatePace,
    start: datetime,
    queued: int,
    new: int,
    horizon_days: int,
) -> BruteForecast:
    """The forecast's numbers, found by walking every slot from `start`."""
    per_slot = pace.per_tick if isinstance(pace, StaggerPace) else 1
    horizon_end = start + timedelta(days=horizon_days)
    first_slot = math.ceil((queued + 1) / per_slot)
    last_slot = math.ceil((queued + new) / per_slot)
    first = last = None
    before_horizon = 0
    for index, slot in enumerate(brute_slots(schedule, pace, start), start=1):
        if slot < horizon_end:
            before_horizon = index
        if new and index == first_slot:
            first = slot
        if new and index == last_slot:
            last = slot
        if index >= last_slot and slot >= horizon_end:
            break
    fit = min(new, max(0, before_horizon * per_slot - queued))
    return BruteForecast(first, last, fit)
