"""Exact send slots of a calendar, found by walking it a week at a time.

A slot is one point of an interval tick grid (anchored `offset` after the interval's start,
`step` apart; see `shared.domain.ticks`).
With a daily cap only the first `daily_cap` slots of each local calendar day are used, counted
from wherever the walk starts. The cost grows with the span walked, so the forecast uses this
only for short stretches and for the weeks it cannot count arithmetically.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.domain.open_time import WeeklyCalendar, week_monday
from shared.domain.ticks import count_grid_ticks, first_grid_index, grid_anchor


class SlotCounter:
    """Counts and finds slots of `calendar` exactly."""

    def __init__(
        self,
        calendar: WeeklyCalendar,
        step: timedelta,
        daily_cap: int | None,
        offset: timedelta = timedelta(0),
    ) -> None:
        self.calendar = calendar
        self.step = step
        self.daily_cap = daily_cap
        self.offset = offset
        self._week_counts: dict[int, int] = {}
        self._day_bounds: dict[int, tuple[datetime, ...]] = {}

    def _days(self, week: int) -> tuple[datetime, ...]:
        # Eight boundaries: local midnights from this Monday to the next one.
        bounds = self._day_bounds.get(week)
        if bounds is None:
            monday = week_monday(week)
            days = (self.calendar.day_start(monday + timedelta(days=i)) for i in range(7))
            bounds = (*days, self.calendar.week_start(week + 1))
            self._day_bounds[week] = bounds
        return bounds

    def _pieces(self, week: int, lo: datetime, hi: datetime) -> list[list[tuple[datetime, int]]]:
        """Per usable span (a day when capped, else the whole range): (first slot, count) pairs."""
        intervals = self.calendar.week_intervals(week)
        spans = [(lo, hi)]
        if self.daily_cap is not None:
            bounds = self._days(week)
            spans = [
                (max(lo, bounds[i]), min(hi, bounds[i + 1]))
                for i in range(7)
                if bounds[i + 1] > lo and bounds[i] < hi
            ]
        result: list[list[tuple[datetime, int]]] = []
        for span_lo, span_hi in spans:
            parts: list[tuple[datetime, int]] = []
            for start, end in intervals:
                anchor = grid_anchor(start, end, self.offset)
                if anchor is None or end <= span_lo or anchor >= span_hi:
                    continue
                count = count_grid_ticks(anchor, max(anchor, span_lo), min(end, span_hi), self.step)
                if count:
                    index = first_grid_index(anchor, span_lo, self.step)
                    parts.append((anchor + index * self.step, count))
            result.append(parts)
        return result

    def _usable(self, parts: list[tuple[datetime, int]]) -> int:
        total = sum(count for _, count in parts)
        return total if self.daily_cap is None else min(total, self.daily_cap)

    def _count_in_week(self, week: int, lo: datetime, hi: datetime) -> int:
        return sum(self._usable(parts) for parts in self._pieces(week, lo, hi))

    def week_count(self, week: int) -> int:
        """Slots in the whole local week `week`."""
        cached = self._week_counts.get(week)
        if cached is None:
            cal = self.calendar
            cached = self._count_in_week(week, cal.week_start(week), cal.week_start(week + 1))
            self._week_counts[week] = cached
        return cached

    def day_counts(self, week: int) -> list[int]:
        """Slots in each local day (Monday first) of week `week`."""
        bounds = self._days(week)
        return [self._count_in_week(week, bounds[i], bounds[i + 1]) for i in range(7)]

    def count(self, lo: datetime, hi: datetime) -> int:
        """Slots in [lo, hi), with a daily cap counted from `lo`."""
        if hi <= lo:
            return 0
        cal = self.calendar
        total = 0
        week = cal.week_of(lo)
        while cal.week_start(week) < hi:
            week_lo = max(lo, cal.week_start(week))
            week_hi = min(hi, cal.week_start(week + 1))
            if week_lo == cal.week_start(week) and week_hi == cal.week_start(week + 1):
                total += self.week_count(week)
            else:
                total += self._count_in_week(week, week_lo, week_hi)
            week += 1
        return total

    def nth(self, lo: datetime, k: int, hi: datetime) -> datetime | None:
        """The k-th slot (1-based) at or after `lo` and before `hi`, or None."""
        if k < 1:
            raise ValueError("k counts from 1")
        cal = self.calendar
        week = cal.week_of(lo)
        while cal.week_start(week) < hi:
            week_lo = max(lo, cal.week_start(week))
            week_hi = min(hi, cal.week_start(week + 1))
            for parts in self._pieces(week, week_lo, week_hi):
                usable = self._usable(parts)
                if k > usable:
                    k -= usable
                    continue
                for first, count in parts:
                    if k <= count:
                        return first + (k - 1) * self.step
                    k -= count
            week += 1
        return None
