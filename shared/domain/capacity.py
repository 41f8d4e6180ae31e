"""Exact slot counts over long spans, at a cost that does not grow with the span.

Three facts make it work:

1. Open intervals never cross a local Monday 00:00 (see `open_time`) and a daily cap works per
   local day, so the slots of a local week depend on that week alone.
2. A week without a clock change or a closure holds the same number of slots, W, as any other
   such week: local time is UTC plus a constant through it, so it is a shifted copy of the
   same week laid out in UTC. W is computed once, in UTC.
3. In rule-based zones (EU last Sunday, AU first Sunday, US second Sunday, ...) each clock
   change recurs every year on the same weekday, at the same wall time, between the same
   offsets, so the week holding it has the same count every year.

A count over many weeks is therefore W * weeks + the sum of (count - W) over the weeks that hold
clock changes + exact counts of weeks touched by closures (a finite list). Fact 3 is checked,
not trusted: the changes in the first two yearly cycles after the start must recur exactly
(same weekday, wall time and offsets, 52 or 53 weeks apart) with equal week counts, and every
later change a count relies on is located near its predicted date and must again show the same
weekday, wall time and offsets. If any check fails the engine falls back to finding every
change year by year: still exact, but its cost then grows with the span.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol, TypeVar

from shared.domain.clock_changes import ClockChange, clock_changes
from shared.domain.open_time import LAST_WEEK, WeeklyCalendar, week_of_ordinal
from shared.domain.schedule import Schedule
from shared.domain.slots import SlotCounter
from shared.domain.wallclock import offset_at, transition_in

MAX_YEARS = 200
WEEKS_PER_YEAR = 365.2425 / 7
_SECOND = timedelta(seconds=1)
# Two full yearly cycles of clock changes fit in this span from any starting point.
_DISCOVERY_SPAN = timedelta(days=2 * 371 + 21)
# A weekday-in-month rule moves its date by at most 6 days from one year to the next.
_SEARCH_RADIUS = timedelta(days=8)

R = TypeVar("R")


class _PatternBroken(Exception):
    """A later year does not repeat the clock changes seen in the first two."""


class _Irregular(Protocol):
    """Extra slots (count - W, possibly negative) of the weeks that hold clock changes."""

    mean_per_week: float

    def sum_delta(self, first: int, stop: int) -> int:
        """Sum over weeks in [first, stop)."""
        ...


def _recurs(a: ClockChange, b: ClockChange) -> bool:
    """True when `b` is `a` one year on: same offsets, weekday and wall time, 52/53 weeks later."""
    return (
        a.before == b.before
        and a.after == b.after
        and a.wall.time() == b.wall.time()
        and (b.wall.date() - a.wall.date()).days in (364, 371)
    )


def _group(weeks: list[int]) -> list[list[int]]:
    """Indices of changes grouped by the week that holds them (weeks are sorted)."""
    groups: list[list[int]] = []
    for index, week in enumerate(weeks):
        if groups and weeks[groups[-1][0]] == week:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


class _NoChanges:
    """No clock change in the first two years: every week is regular."""

    mean_per_week = 0.0

    def __init__(self, calendar: WeeklyCalendar, offset: timedelta, checked_until: int) -> None:
        self._calendar = calendar
        self._offset = offset
        self._checked_until = checked_until

    def sum_delta(self, first: int, stop: int) -> int:
        if stop > self._checked_until:
            # Cheap guard against a zone that starts (or stops) changing clocks later on: the
            # offset half a year before and at the end of the span must still be the same.
            for week in (stop - 26, stop):
                if offset_at(self._calendar.week_start(week), self._calendar.tz) != self._offset:
                    raise _PatternBroken
        return 0


class _YearlyPattern:
    """Clock changes that repeat every year, with the extra slots of each week that holds them."""

    def __init__(
        self,
        calendar: WeeklyCalendar,
        leaders: list[ClockChange],
        weeks: tuple[list[int], list[int]],
        deltas: list[int],
    ) -> None:
        self._calendar = calendar
        self._leaders = leaders  # the first change of each group, in the first cycle
        self._weeks: dict[tuple[int, int], int] = {}
        for cycle, cycle_weeks in enumerate(weeks):
            for group, week in enumerate(cycle_weeks):
                self._weeks[group, cycle] = week
        self.deltas = tuple(deltas)
        self.mean_per_week = sum(deltas) / WEEKS_PER_YEAR

    def _locate(self, group: int, cycle: int) -> int:
        """Week holding the change of `group` in yearly `cycle`, checked against the pattern."""
        known = self._weeks.get((group, cycle))
        if known is not None:
            return known
        change = self._leaders[group]
        wall = change.wall
        try:
            predicted = wall.replace(year=wall.year + cycle)
        except ValueError:  # 29 February
            predicted = wall.replace(year=wall.year + cycle, day=28)
        centre = (predicted - change.before).replace(tzinfo=UTC)
        lo, hi = centre - _SEARCH_RADIUS, centre + _SEARCH_RADIUS
        tz = self._calendar.tz
        if offset_at(lo, tz) != change.before or offset_at(hi, tz) != change.after:
            raise _PatternBroken
        found = ClockChange(transition_in(lo, hi, tz), change.before, change.after)
        if found.wall.time() != wall.time() or found.wall.weekday() != wall.weekday():
            raise _PatternBroken
        week = self._calendar.week_of(found.instant)
        self._weeks[group, cycle] = week
        return week

    def _first_cycle_from(self, group: int, week: int) -> int:
        """Smallest cycle whose change of `group` lies in `week` or later."""
        start = self._locate(group, 0)
        if week <= start:
            return 0
        cycle = int((week - start) / WEEKS_PER_YEAR)
        while cycle > 0 and self._locate(group, cycle - 1) >= week:
            cycle -= 1
        while self._locate(group, cycle) < week:
            cycle += 1
        return cycle

    def sum_delta(self, first: int, stop: int) -> int:
        total = 0
        for group, delta in enumerate(self.deltas):
            if delta:
                cycles = self._first_cycle_from(group, stop) - self._first_cycle_from(group, first)
                total += delta * cycles
        return total


class _Scanned:
    """Fallback: find every clock change, year by year, and count its week exactly."""

    def __init__(self, plain: SlotCounter, regular: int, first_week: int) -> None:
        self._plain = plain
        self._regular = regular
        self._scanned = first_week  # weeks before this one are done
        self._weeks: list[int] = []
        self._prefix: list[int] = [0]
        self.mean_per_week = 0.0
        self._start = first_week

    def _scan_to(self, week: int) -> None:
        calendar = self._plain.calendar
        while self._scanned < week:
            stop = min(week, self._scanned + 53)
            lo = calendar.week_start(self._scanned) - _SECOND
            hi = calendar.week_start(stop) - _SECOND
            for change in clock_changes(calendar.tz, lo, hi):
                changed = calendar.week_of(change.instant)
                if not self._weeks or self._weeks[-1] != changed:
                    self._weeks.append(changed)
                    delta = self._plain.week_count(changed) - self._regular
                    self._prefix.append(self._prefix[-1] + delta)
            self._scanned = stop
        self.mean_per_week = self._prefix[-1] / max(1, self._scanned - self._start)

    def sum_delta(self, first: int, stop: int) -> int:
        self._scan_to(stop)
        lo = bisect.bisect_left(self._weeks, first)
        hi = bisect.bisect_left(self._weeks, stop)
        return self._prefix[hi] - self._prefix[lo]


class Capacity:
    """Slots of a schedule from `origin` on: counted and found exactly, fast."""

    def __init__(
        self,
        schedule: Schedule,
        step: timedelta,
        daily_cap: int | None,
        origin: datetime,
        offset: timedelta = timedelta(0),
    ) -> None:
        tz = schedule.tz
        full = schedule.calendar()
        self.full = SlotCounter(full, step, daily_cap, offset)
        self.plain = SlotCounter(
            WeeklyCalendar(schedule.sessions, schedule.blackouts, (), tz), step, daily_cap, offset
        )
        in_utc = WeeklyCalendar(schedule.sessions, schedule.blackouts, (), UTC)
        self.origin = origin
        origin_week = full.week_of(origin)
        # A normal week (no clock change, no closure) laid out in UTC: fact 2.
        self.day_counts = tuple(
            SlotCounter(in_utc, step, daily_cap, offset).day_counts(origin_week)
        )
        self.regular = sum(self.day_counts)
        self.first_week = origin_week + (full.week_start(origin_week) < origin)
        self.limit_week = min(self.first_week + math.ceil(MAX_YEARS * WEEKS_PER_YEAR), LAST_WEEK)
        self.closure_weeks = self._closure_weeks(full)
        self.pattern_checked = True
        self.irregular: _Irregular = self._discover(tz)

    def _closure_weeks(self, calendar: WeeklyCalendar) -> list[tuple[int, int]]:
        ranges: list[tuple[int, int]] = []
        for begin, end in calendar.closures:
            # `end` is the day after the last closed date: a closed Sunday also trims the
            # first hour of Monday when Monday midnight repeats, so count that week too.
            first = max(week_of_ordinal(begin), self.first_week)
            stop = min(week_of_ordinal(end) + 1, self.limit_week)
            if first >= stop:
                continue
            if ranges and first <= ranges[-1][1]:
                ranges[-1] = (ranges[-1][0], max(stop, ranges[-1][1]))
            else:
                ranges.append((first, stop))
        return ranges

    def _discover(self, tz: tzinfo) -> _Irregular:
        calendar = self.plain.calendar
        p0 = calendar.week_start(self.first_week)
        if not self.regular:  # nothing is ever open, so nothing needs checking
            return _NoChanges(calendar, offset_at(p0, tz), self.limit_week + 1)
        changes = clock_changes(tz, p0 - _SECOND, p0 + _DISCOVERY_SPAN)
        if not changes:
            return _NoChanges(calendar, offset_at(p0, tz), calendar.week_of(p0 + _DISCOVERY_SPAN))
        per_year = next((j for j in range(1, len(changes)) if _recurs(changes[0], changes[j])), 0)
        if (
            not per_year
            or 2 * per_year > len(changes)
            or not all(_recurs(changes[i], changes[i + per_year]) for i in range(per_year))
        ):
            return self._fallback()
        weeks0 = [calendar.week_of(c.instant) for c in changes[:per_year]]
        weeks1 = [calendar.week_of(c.instant) for c in changes[per_year : 2 * per_year]]
        groups = _group(weeks0)
        if groups != _group(weeks1) or weeks1[0] <= weeks0[-1]:
            return self._fallback()
        deltas = [self.plain.week_count(weeks0[g[0]]) - self.regular for g in groups]
        if deltas != [self.plain.week_count(weeks1[g[0]]) - self.regular for g in groups]:
            return self._fallback()
        leaders = [changes[g[0]] for g in groups]
        lead_weeks = ([weeks0[g[0]] for g in groups], [weeks1[g[0]] for g in groups])
        return _YearlyPattern(calendar, leaders, lead_weeks, deltas)

    def _fallback(self) -> _Irregular:
        self.pattern_checked = False
        return _Scanned(self.plain, self.regular, self.first_week)

    def _guarded(self, query: Callable[[], R]) -> R:
        try:
            return query()
        except _PatternBroken:
            self.irregular = self._fallback()
            return query()

    def notes(self, per_slot: int) -> list[str]:
        """Short human lines on how clock changes and closures were counted."""
        lines: list[str] = []
        irregular = self.irregular
        if isinstance(irregular, _YearlyPattern):
            changed = [delta * per_slot for delta in irregular.deltas if delta]
            if changed:
                lines.append(
                    "Weeks with a clock change hold "
                    + ", ".join(f"{delta:+d}" for delta in changed)
                    + " sends; counted once a year and multiplied (checked on two years)."
                )
        elif isinstance(irregular, _Scanned):
            lines.append("Clock changes here do not repeat yearly; each one was counted.")
        if self.closure_weeks:
            weeks = sum(stop - first for first, stop in self.closure_weeks)
            lines.append(f"Closures touch {weeks} week(s); those were counted day by day.")
        return lines

    # -- counting ---------------------------------------------------------------------------

    def _regular_span(self, first: int, stop: int) -> int:
        """Slots in weeks [first, stop) that no closure touches."""
        return self.regular * (stop - first) + self.irregular.sum_delta(first, stop)

    def _exact_weeks(self, first: int, stop: int) -> int:
        return sum(self.full.week_count(week) for week in range(first, stop))

    def count_to(self, end: datetime) -> int:
        """Slots in [origin, end)."""
        return self._guarded(lambda: self._count_to(end))

    def _count_to(self, end: datetime) -> int:
        calendar = self.full.calendar
        p0 = calendar.week_start(self.first_week)
        if end <= p0:
            return self.full.count(self.origin, end)
        last = calendar.week_of(end)
        if last >= self.limit_week:
            raise ValueError(f"cannot count more than {MAX_YEARS} years ahead")
        total = self.full.count(self.origin, p0)
        position = self.first_week
        for first, stop in self.closure_weeks:
            if first >= last:
                break
            total += self._regular_span(position, first)
            position = min(stop, last)
            total += self._exact_weeks(first, position)
        total += self._regular_span(position, last)
        return total + self.full.count(calendar.week_start(last), end)

    def nth(self, k: int) -> datetime | None:
        """The k-th slot (1-based) from `origin`, or None if it is more than MAX_YEARS away."""
        if k < 1:
            raise ValueError("k counts from 1")
        if not self.regular:
            return None
        return self._guarded(lambda: self._nth(k))

    def _nth(self, k: int) -> datetime | None:
        calendar = self.full.calendar
        p0 = calendar.week_start(self.first_week)
        head = self.full.count(self.origin, p0)
        if k <= head:
            return self.full.nth(self.origin, k, p0)
        k -= head
        position = self.first_week
        for first, stop in self.closure_weeks:
            week, k = self._search(position, first, k)
            if week is not None:
                return self._in_week(week, k)
            for week in range(first, stop):
                count = self.full.week_count(week)
                if k <= count:
                    return self._in_week(week, k)
                k -= count
            position = stop
        week, k = self._search(position, self.limit_week, k)
        return None if week is None else self._in_week(week, k)

    def _in_week(self, week: int, k: int) -> datetime:
        calendar = self.full.calendar
        found = self.full.nth(calendar.week_start(week), k, calendar.week_start(week + 1))
        if found is None:
            # The arithmetic promised this week holds k slots; only a wrong pattern breaks that.
            raise _PatternBroken
        return found

    def _search(self, first: int, stop: int, k: int) -> tuple[int | None, int]:
        """Week in [first, stop) holding the k-th slot counted from `first`, and k within it.

        Returns (None, k minus the span's slots) when the span holds fewer than k.
        """
        if stop <= first:
            return None, k

        def reached(week: int) -> bool:  # do weeks [first, week) hold k slots?
            return self._regular_span(first, week) >= k

        # Guess from the average rate, then widen to a bracket and bisect: the guess is off by a
        # week or two at most, so only a handful of evaluations are needed. The span's end is
        # only evaluated if the bracket gets there (for the open-ended span it is far away).
        rate = self.regular + self.irregular.mean_per_week
        guess = first + max(1, math.ceil(k / rate)) if rate > 0 else stop
        low, high = first, min(max(guess, first + 1), stop)
        step = 1
        if reached(high):
            while high - step > low and reached(high - step):
                high -= step
                step *= 2
            low = max(low, high - step)
        else:
            while True:
                if high == stop:
                    return None, k - self._regular_span(first, stop)
                low, high = high, min(stop, high + step)
                step *= 2
                if reached(high):
                    break
        while high - low > 1:
            middle = (low + high) // 2
            if reached(middle):
                high = middle
            else:
                low = middle
        week = high - 1
        return week, k - self._regular_span(first, week)
