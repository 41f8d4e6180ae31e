"""Weekly windows turned into real open time: sorted UTC intervals, DST-correct.

Rules:

* Each occurrence of a session on a local date runs from its start wall time to its end wall
  time, converted by the rules in `wallclock`: a start or end in a spring-forward gap is the
  instant the gap ends; a repeated (fall-back) wall time is the EARLIER instant for a start and
  the LATER instant for an end, so every window covers its whole wall-clock span in real time.
  A session lying wholly inside a gap that day is empty.
* Blackouts use the same rules and are removed from the sessions. A closure removes whole local
  dates: from the local midnight that starts its first date (start rule) to the local midnight
  that ends its last date (end rule).
* Open intervals are maximal runs of open time, except that open time is cut at every local
  Monday 00:00 (start rule). Each interval therefore lies in one local week: its start, which
  anchors tick grids, never depends on how far back anyone looked, and every week can be
  counted on its own (the forecast relies on this). The cost is that a run from Sunday night
  into Monday restarts its tick grid at midnight.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from shared.domain.intervals import subtract, union
from shared.domain.wallclock import require_utc, resolve_tz, to_wall, wall_pair_to_utc
from shared.domain.weekly import DateClosure, Weekday, WeeklyWindow, weekly_open_spans

Interval = tuple[datetime, datetime]

_MIDNIGHT = (time(0, 0), time(0, 0, fold=1))
# Week indices count Mondays from date(1, 1, 1), which is a Monday (ordinal 1). LAST_WEEK is
# the last week whose neighbours still fit in the calendar.
LAST_WEEK = (date.max.toordinal() - 10) // 7 - 1


def week_monday(week: int) -> date:
    """The Monday that starts week number `week`."""
    return date.fromordinal(7 * week + 1)


def week_of_ordinal(ordinal: int) -> int:
    """Number of the week (Monday to Sunday) containing the date with this proleptic ordinal."""
    return (ordinal - 1) // 7


def week_of_date(day: date) -> int:
    """Number of the week (Monday to Sunday) containing `day`."""
    return week_of_ordinal(day.toordinal())


_NEXT_DAY = timedelta(days=1)


@dataclass(frozen=True)
class _Window:
    """A weekly window's wall times, each with both fold readings, ready for conversion."""

    start: tuple[time, time]
    end: tuple[time, time]
    overnight: bool


def _folds(windows: Iterable[WeeklyWindow]) -> tuple[_Window, ...]:
    return tuple(
        _Window(
            (w.start.replace(fold=0), w.start.replace(fold=1)),
            (w.end.replace(fold=0), w.end.replace(fold=1)),
            w.overnight,
        )
        for w in windows
    )


class WeeklyCalendar:
    """Open time of one site, computed a local week at a time and cached."""

    def __init__(
        self,
        sessions: Iterable[WeeklyWindow],
        blackouts: Iterable[WeeklyWindow],
        closures: Iterable[DateClosure],
        tz: tzinfo,
    ) -> None:
        session_list = tuple(sessions)
        blackout_list = tuple(blackouts)
        self.tz = tz
        self._sessions = [_folds(w for w in session_list if day in w.days) for day in Weekday]
        self._blackouts = [_folds(w for w in blackout_list if day in w.days) for day in Weekday]
        # Closed dates as merged half-open ranges of date ordinals.
        self.closures = tuple(union((c.start.toordinal(), c.end.toordinal() + 1) for c in closures))
        # If no wall-clock time of the week is open, no real time ever is; say so up front so
        # that walking forward can stop instead of looping for ever.
        self.has_open_time = bool(weekly_open_spans(session_list, blackout_list))
        self._week_starts: dict[int, datetime] = {}
        self._weeks: dict[int, tuple[Interval, ...]] = {}

    def _utc(self, day: date, wall: tuple[time, time], closing: bool = False) -> datetime:
        first, second = datetime.combine(day, wall[0]), datetime.combine(day, wall[1])
        return wall_pair_to_utc(first, second, self.tz, closing)

    def day_start(self, day: date) -> datetime:
        """UTC instant of local midnight starting `day` (start rule)."""
        return self._utc(day, _MIDNIGHT)

    def week_start(self, week: int) -> datetime:
        """UTC instant of local Monday 00:00 starting week number `week`."""
        start = self._week_starts.get(week)
        if start is None:
            start = self.day_start(week_monday(week))
            self._week_starts[week] = start
        return start

    def week_of(self, instant: datetime) -> int:
        """Number of the local week containing the aware `instant`."""
        return week_of_date(to_wall(instant, self.tz).date())

    def _occurrence(self, day: date, window: _Window) -> Interval:
        start = self._utc(day, window.start)
        end = self._utc(day + _NEXT_DAY if window.overnight else day, window.end, closing=True)
        return start, end

    def week_intervals(self, week: int) -> tuple[Interval, ...]:
        """Open intervals of local week `week`, sorted, disjoint, inside the week."""
        cached = self._weeks.get(week)
        if cached is not None:
            return cached
        if not self.has_open_time:
            return ()
        lo, hi = self.week_start(week), self.week_start(week + 1)
        first = 7 * week  # the Sunday before: its overnight windows reach into this week
        opened: list[Interval] = []
        closed: list[Interval] = []
        for ordinal in range(first, first + 8):
            day = date.fromordinal(ordinal)
            weekday = day.weekday()
            for window in self._sessions[weekday]:
                opened.append(self._occurrence(day, window))
            for window in self._blackouts[weekday]:
                closed.append(self._occurrence(day, window))
        for begin, end in self.closures:
            if end <= first or begin >= first + 8:
                continue
            start = self.day_start(date.fromordinal(max(begin, first)))
            stop_day = date.fromordinal(min(end, first + 8))
            stop = self._utc(stop_day, _MIDNIGHT, closing=True)
            closed.append((start, stop))
        clipped = [(max(s, lo), min(e, hi)) for s, e in opened]
        result = tuple(subtract(union(clipped), union(closed)))
        self._weeks[week] = result
        return result

    def is_open(self, instant: datetime) -> bool:
        """True when the aware `instant` lies in open time."""
        return any(s <= instant < e for s, e in self.week_intervals(self.week_of(instant)))

    def iter_from(self, start: datetime) -> Iterator[Interval]:
        """Open intervals ending after `start`, in order; the first may begin before it."""
        if not self.has_open_time:
            return
        week = self.week_of(start)
        while week <= LAST_WEEK:
            for interval in self.week_intervals(week):
                if interval[1] > start:
                    yield interval
            week += 1


def _calendar(
    sessions: Iterable[WeeklyWindow],
    blackouts: Iterable[WeeklyWindow],
    closures: Iterable[DateClosure],
    tz_name: str,
) -> WeeklyCalendar:
    return WeeklyCalendar(sessions, blackouts, closures, resolve_tz(tz_name))


def open_intervals(
    sessions: Sequence[WeeklyWindow],
    blackouts: Sequence[WeeklyWindow],
    closures: Sequence[DateClosure],
    tz_name: str,
    start_utc: datetime,
    end_utc: datetime,
) -> list[Interval]:
    """Open time in [start_utc, end_utc) as sorted, disjoint UTC intervals (see module rules)."""
    start = require_utc(start_utc, "start_utc")
    end = require_utc(end_utc, "end_utc")
    result: list[Interval] = []
    if end <= start:
        return result
    for begin, finish in _calendar(sessions, blackouts, closures, tz_name).iter_from(start):
        if begin >= end:
            break
        result.append((max(begin, start), min(finish, end)))
    return result


def iter_open_intervals(
    sessions: Sequence[WeeklyWindow],
    blackouts: Sequence[WeeklyWindow],
    closures: Sequence[DateClosure],
    tz_name: str,
    start_utc: datetime,
) -> Iterator[Interval]:
    """Lazily yield open intervals that end after `start_utc`, for ever (see module rules).

    Unlike `open_intervals`, the first interval is NOT clipped to `start_utc`: it keeps its
    real opening instant, so tick grids anchored on it are the same whenever a scheduler
    starts. Yields nothing if the sessions leave no open wall-clock time in the week.
    """
    start = require_utc(start_utc, "start_utc")
    return _calendar(sessions, blackouts, closures, tz_name).iter_from(start)
