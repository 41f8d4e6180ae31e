"""The pre-send forecast: when the last message goes, what fits in D days, and whether to warn.

Messages leave in order: the `queued` ones first, then the `new` ones. Send slots come from
the schedule's open time (see `open_time`) and the pace:

* `StaggerPace(every, per_tick)`: the interval ticks of `ticks` (anchored where each open
  interval opens, `every` apart), each carrying `per_tick` messages.
* `RatePace(per_minute, daily_cap)`: slots `60/per_minute` seconds apart on the same kind of
  grid; with a cap only the first `daily_cap` slots of each local day are used, counted from
  `start` (what was sent earlier that day is not known here).
* `ImmediatePace()`: every message at the first open instant at or after `start`.

The cost does not grow with the number of messages: `capacity.Capacity` counts whole weeks
arithmetically and clock-change weeks once per yearly pattern (its docstring says how the
pattern is checked). Answers more than `capacity.MAX_YEARS` years away are reported as None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.domain.capacity import MAX_YEARS, Capacity
from shared.domain.numbers import for_people
from shared.domain.schedule import (
    ImmediatePace,
    Pace,
    RatePace,
    Schedule,
    StaggerPace,
)
from shared.domain.wallclock import require_utc, to_wall

__all__ = [
    "Forecast",
    "ImmediatePace",
    "Pace",
    "RatePace",
    "Schedule",
    "StaggerPace",
    "capacity_between",
    "forecast",
]

_MINUTE = timedelta(minutes=1)
_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Forecast:
    """What sending `new` messages after `queued` ones will look like.

    `first_send`/`last_send`: UTC instants of the first and last NEW message (None when there
    are no new messages or they cannot be sent within MAX_YEARS, e.g. no sessions at all).
    `capacity_per_week` and `sends_per_day`: a normal week without clock change or closure,
    and that week's capacity divided by its number of days with any send (None when
    sending is immediate). `fit_within_horizon`: how many NEW messages go out before
    start + horizon_days, after the queued ones. `session_minutes_needed`: the open session
    time the new messages use at this pace, ignoring the queue, session ends and daily caps:
    ceil(new / per_tick) ticks of `every` each (100 SMS at one per 3 minutes need 300
    minutes), new * (60 / per_minute) seconds for a rate, 0 for immediate sending.
    """

    first_send: datetime | None
    last_send: datetime | None
    sends_per_day: float | None
    capacity_per_week: int | None
    fit_within_horizon: int
    session_minutes_needed: float
    too_long: bool
    warning: str | None
    explanation: tuple[str, ...]


def _slots(pace: StaggerPace | RatePace) -> tuple[timedelta, int | None, int]:
    """(grid step, daily cap, messages per slot) of a non-immediate pace."""
    if isinstance(pace, StaggerPace):
        return pace.every, None, pace.per_tick
    return pace.step, pace.daily_cap, 1


def _duration(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds % 3600 == 0:
        return f"{_number(seconds / 3600)} h"
    if seconds % 60 == 0:
        return f"{_number(seconds / 60)} min"
    return f"{_number(seconds)} s"


def _number(value: float) -> str:
    """1234567 as "1,234,567", 2.5 as "2.5" (the one helper every page uses)."""
    return for_people(value)


def _plural(count: float, noun: str) -> str:
    return f"{_number(count)} {noun}" if count == 1 else f"{_number(count)} {noun}s"


def _local(instant: datetime, schedule: Schedule) -> str:
    return to_wall(instant, schedule.tz).strftime("%a %d %b %Y %H:%M")


def _describe_pace(pace: Pace) -> str:
    if isinstance(pace, StaggerPace):
        return f"One tick every {_duration(pace.every)}, {_plural(pace.per_tick, 'message')} each."
    if isinstance(pace, RatePace):
        text = f"{_number(pace.per_minute)} a minute (one every {_duration(pace.step)})"
        if pace.daily_cap is not None:
            text += f", at most {_number(pace.daily_cap)} a day"
        return text + "."
    return "Everything goes at the first open instant."


def _validate(queued: int, new: int, horizon_days: int, warn_after_days: float | None) -> None:
    if queued < 0 or new < 0:
        raise ValueError("queued and new must not be negative")
    if not 0 <= horizon_days <= 365 * MAX_YEARS:
        raise ValueError(f"horizon_days must be between 0 and {365 * MAX_YEARS}")
    if warn_after_days is not None and not warn_after_days > 0:
        raise ValueError("warn_after_days must be positive")


@dataclass(frozen=True)
class _Sending:
    """What the pace-specific part of the forecast works out."""

    first: datetime | None
    last: datetime | None
    fit: int
    per_week: int | None
    per_day: float | None
    minutes: float
    never_open: bool
    lines: tuple[str, ...]


def _immediate(schedule: Schedule, start: datetime, new: int, horizon_end: datetime) -> _Sending:
    opening = next(schedule.calendar().iter_from(start), None)
    at = None if opening is None else max(start, opening[0])
    fit = new if at is not None and at < horizon_end else 0
    sent = at if new else None
    return _Sending(sent, sent, fit, None, None, 0.0, opening is None, ())


def _paced(
    schedule: Schedule,
    pace: StaggerPace | RatePace,
    start: datetime,
    queued: int,
    new: int,
    horizon_end: datetime,
) -> _Sending:
    step, cap, per_slot = _slots(pace)
    engine = Capacity(schedule, step, cap, start, pace.offset)
    per_week = engine.regular * per_slot
    open_days = sum(1 for count in engine.day_counts if count)
    per_day = per_week / open_days if open_days else 0.0
    lines = [
        f"A normal week holds {_number(per_week)} sends over {_plural(open_days, 'open day')}"
        f" (about {per_day:,.0f} a day)."
    ]
    first = last = None
    if new:
        first = engine.nth(math.ceil((queued + 1) / per_slot))
        last = engine.nth(math.ceil((queued + new) / per_slot))
    fit = min(new, max(0, engine.count_to(horizon_end) * per_slot - queued))
    lines.extend(engine.notes(per_slot))
    if isinstance(pace, StaggerPace):
        minutes = math.ceil(new / pace.per_tick) * (pace.every / _MINUTE)
    else:
        minutes = new * (pace.step / _MINUTE)
    if new:
        lines.append(f"{_number(new)} new messages use {_number(minutes)} minutes of session time.")
    return _Sending(first, last, fit, per_week, per_day, minutes, engine.regular == 0, tuple(lines))


def _warning(
    sending: _Sending, pace: Pace, start: datetime, new: int, warn_after_days: float | None
) -> str | None:
    if not new:
        return None
    if sending.last is None:
        if sending.never_open:
            return "Nothing can be sent: the delivery sessions leave no open time."
        return f"Sending would take more than {MAX_YEARS} years."
    if warn_after_days is None or sending.last - start <= timedelta(days=warn_after_days):
        return None
    days = math.ceil((sending.last - start) / _DAY)
    remedy = "Raise the sending rate" if isinstance(pace, RatePace) else "Shorten the interval"
    return (
        f"Sending will take {_plural(days, 'day')}; this site warns after "
        f"{_plural(warn_after_days, 'day')}. {remedy} or add delivery sessions."
    )


def forecast(
    schedule: Schedule,
    pace: Pace,
    start: datetime,
    queued: int,
    new: int,
    horizon_days: int,
    warn_after_days: float | None = None,
) -> Forecast:
    """Forecast sending `new` messages after `queued` ones from `start` (see module docstring)."""
    start = require_utc(start, "start")
    _validate(queued, new, horizon_days, warn_after_days)
    horizon_end = start + timedelta(days=horizon_days)
    if isinstance(pace, ImmediatePace):
        sending = _immediate(schedule, start, new, horizon_end)
    else:
        sending = _paced(schedule, pace, start, queued, new, horizon_end)
    lines = [
        f"Open time: {_plural(len(schedule.sessions), 'session')}, "
        f"{_plural(len(schedule.blackouts), 'blackout')}, "
        f"{_plural(len(schedule.closures), 'closure')} in {schedule.tz_name}.",
        _describe_pace(pace),
    ]
    if queued:
        lines.append(f"{_number(queued)} already queued go first.")
    lines.extend(sending.lines)
    lines.append(
        f"{_number(sending.fit)} of {_number(new)} new messages go within "
        f"{_plural(horizon_days, 'day')}."
    )
    if sending.last is not None:
        lines.append(
            f"The last new message goes {_local(sending.last, schedule)} ({schedule.tz_name})."
        )
    warning = _warning(sending, pace, start, new, warn_after_days)
    return Forecast(
        first_send=sending.first,
        last_send=sending.last,
        sends_per_day=sending.per_day,
        capacity_per_week=sending.per_week,
        fit_within_horizon=sending.fit,
        session_minutes_needed=sending.minutes,
        # Never sending at all counts as taking too long, with or without a threshold.
        too_long=warning is not None,
        warning=warning,
        explanation=tuple(lines),
    )


def capacity_between(schedule: Schedule, pace: Pace, start: datetime, end: datetime) -> int:
    """How many sends fit in [start, end) at `pace` (ValueError for an immediate pace)."""
    if isinstance(pace, ImmediatePace):
        raise ValueError("an immediate pace has no capacity limit")
    start = require_utc(start, "start")
    end = require_utc(end, "end")
    if end <= start:
        return 0
    step, cap, per_slot = _slots(pace)
    return Capacity(schedule, step, cap, start, pace.offset).count_to(end) * per_slot
