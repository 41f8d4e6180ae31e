"""Tick instants shared by the scheduler and the forecast, so the two can never disagree.

Interval ticks: inside each open interval [s, e) ticks fall at s + o, s + o + every, ...
strictly before e, where o is the schedule's grid offset (`grid_offset`: 0 for a bare grid, a
per-site fraction of the interval for a site's schedule). The grid is anchored at the
interval's own start and paced in real time, so a skipped hour holds no tick and a repeated
hour is not ticked twice. Intervals must come
from `open_time` unclipped (its `iter_open_intervals`), or anchors would move with the
instant a caller happened to start from; `session_tick_instants` does this for you.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, time, timedelta

from shared.domain.open_time import Interval, WeeklyCalendar
from shared.domain.wallclock import require_utc, resolve_tz, to_wall, wall_to_utc
from shared.domain.weekly import DateClosure, Weekday, WeeklyWindow

_ALWAYS = WeeklyWindow(frozenset(Weekday), time(0, 0), time(0, 0))
_MILLISECOND = timedelta(milliseconds=1)
GRID_SPREAD = timedelta(seconds=60)
"""Widest grid offset. Sessions start on whole minutes, so without offsets every site whose
sessions open together would tick at the same instant (20,000 ticks at once for 10,000 sites
ticking every minute on two channels); offsets spread them over this span instead, while a
site's first tick still comes within a minute of its session opening."""


def grid_offset(key: str, every: timedelta) -> timedelta:
    """Deterministic offset of a schedule's grid: whole milliseconds in [0, min(every, spread)).

    Derived from `key` (a site id and channel) with SHA-256, so every scheduler replica and
    the forecast compute the same instants; independent of the process and of the hash seed.
    """
    _require_step(every)
    span = min(every, GRID_SPREAD) // _MILLISECOND
    if span <= 1:
        return timedelta(0)
    digest = hashlib.sha256(key.encode()).digest()
    return (int.from_bytes(digest[:8], "big") % span) * _MILLISECOND


def grid_anchor(start: datetime, end: datetime, offset: timedelta) -> datetime | None:
    """Where the grid of open interval [start, end) starts, or None when it holds no tick."""
    anchor = start + offset
    return anchor if anchor < end else None


def _require_step(every: timedelta) -> None:
    if every <= timedelta(0):
        raise ValueError("tick interval must be positive")


def _ceil_div(numerator: timedelta, step: timedelta) -> int:
    return -((-numerator) // step)


def count_interval_ticks(start: datetime, end: datetime, every: timedelta) -> int:
    """Number of ticks at start, start + every, ... strictly before `end` (0 if end <= start)."""
    _require_step(every)
    if end <= start:
        return 0
    return _ceil_div(end - start, every)


def count_grid_ticks(anchor: datetime, lo: datetime, hi: datetime, every: timedelta) -> int:
    """Ticks of the grid anchor + k*every (k >= 0) that lie in [lo, hi)."""
    _require_step(every)
    lo = max(lo, anchor)
    if hi <= lo:
        return 0
    return _ceil_div(hi - anchor, every) - _ceil_div(lo - anchor, every)


def first_grid_index(anchor: datetime, at: datetime, every: timedelta) -> int:
    """Index k of the first grid tick anchor + k*every at or after `at` (0 if at <= anchor)."""
    if at <= anchor:
        return 0
    return _ceil_div(at - anchor, every)


def interval_tick_instants(
    intervals: Iterable[Interval], every: timedelta, offset: timedelta = timedelta(0)
) -> Iterator[datetime]:
    """Ticks of each interval, anchored at its start plus `offset`, in order (module docstring)."""
    _require_step(every)
    for start, end in intervals:
        anchor = grid_anchor(start, end, offset)
        if anchor is None:
            continue
        for k in range(count_interval_ticks(anchor, end, every)):
            yield anchor + k * every


def session_tick_instants(
    every: timedelta,
    sessions: Sequence[WeeklyWindow],
    blackouts: Sequence[WeeklyWindow],
    closures: Sequence[DateClosure],
    tz_name: str,
    start_utc: datetime,
    end_utc: datetime,
    offset: timedelta = timedelta(0),
) -> Iterator[datetime]:
    """Interval ticks in [start_utc, end_utc), grids anchored `offset` after each interval opens."""
    _require_step(every)
    start = require_utc(start_utc, "start_utc")
    end = require_utc(end_utc, "end_utc")
    calendar = WeeklyCalendar(sessions, blackouts, closures, resolve_tz(tz_name))
    for begin, finish in calendar.iter_from(start):
        if begin >= end:
            return
        anchor = grid_anchor(begin, finish, offset)
        if anchor is None:
            continue
        k = first_grid_index(anchor, start, every)
        tick = anchor + k * every
        while tick < finish and tick < end:
            yield tick
            tick += every


def preset_tick_instants(
    times: Sequence[time],
    sessions: Sequence[WeeklyWindow],
    blackouts: Sequence[WeeklyWindow],
    closures: Sequence[DateClosure],
    tz_name: str,
    start_utc: datetime,
    end_utc: datetime,
) -> list[datetime]:
    """Instants in [start_utc, end_utc) of each preset local time, every day, sorted.

    A preset fires only inside open time when sessions are given; with no sessions it fires
    every day outside blackouts and closures. A preset in a spring-forward gap fires at the
    instant the gap ends; one at a repeated wall time fires once, at the earlier instant.
    """
    if any(t.tzinfo is not None for t in times):
        raise ValueError("preset times are local wall times and must be naive")
    start = require_utc(start_utc, "start_utc")
    end = require_utc(end_utc, "end_utc")
    if end <= start or not times:
        return []
    tz = resolve_tz(tz_name)
    calendar = WeeklyCalendar(sessions or (_ALWAYS,), blackouts, closures, tz)
    first_day = to_wall(start, tz).date() - timedelta(days=1)
    last_day = to_wall(end, tz).date() + timedelta(days=1)
    candidates: set[datetime] = set()
    for ordinal in range(first_day.toordinal(), last_day.toordinal() + 1):
        day = date.fromordinal(ordinal)
        for preset in times:
            candidates.add(wall_to_utc(datetime.combine(day, preset), tz))
    return sorted(t for t in candidates if start <= t < end and calendar.is_open(t))


def tick_id(site_id: str, channel: str, instant: datetime) -> str:
    """Deterministic tick id: first 32 hex chars of sha256("site|channel|UTC ISO instant").

    The instant is written in UTC with microseconds (e.g. 2025-03-30T01:00:00.000000+00:00),
    so every replica that schedules the same tick derives the same id.
    """
    for name, part in (("site_id", site_id), ("channel", channel)):
        if "|" in part:
            # The separator inside a part would let two different ticks share one id.
            raise ValueError(f"{name} must not contain '|'")
    stamp = require_utc(instant).isoformat(timespec="microseconds")
    return hashlib.sha256(f"{site_id}|{channel}|{stamp}".encode()).hexdigest()[:32]
