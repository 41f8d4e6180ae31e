"""Weekly local-time windows (delivery sessions, blackouts) and whole-day closures.

A `WeeklyWindow` opens on each listed weekday at `start` local wall time and closes at `end`.
`end <= start` means it closes on the following day (overnight); `end == start` is a
24-hour window. Nothing here knows about time zones: `open_time` turns windows into instants.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, time
from enum import IntEnum

from shared.domain.intervals import subtract, union

DAY_US = 86_400 * 1_000_000
WEEK_US = 7 * DAY_US

# Ranges are written with an en dash, as in "Mon\u2013Fri 09:00\u201312:00".
_DASH = "\u2013"
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class Weekday(IntEnum):
    """ISO weekday numbered like `date.weekday()`: Monday is 0."""

    MON = 0
    TUE = 1
    WED = 2
    THU = 3
    FRI = 4
    SAT = 5
    SUN = 6

    @property
    def short_name(self) -> str:
        """Three-letter English name, e.g. "Mon"."""
        return _DAY_NAMES[self.value]


def _time_us(t: time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond


def _format_time(t: time) -> str:
    if t.microsecond:
        return t.isoformat(timespec="microseconds")
    return t.strftime("%H:%M:%S" if t.second else "%H:%M")


def _describe_days(days: frozenset[Weekday]) -> str:
    # Runs of three or more consecutive days read better as a range (Mon to Fri).
    ordered = sorted(days)
    runs: list[list[Weekday]] = []
    for day in ordered:
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts: list[str] = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{run[0].short_name}{_DASH}{run[-1].short_name}")
        else:
            parts.extend(d.short_name for d in run)
    return ", ".join(parts)


@dataclass(frozen=True)
class WeeklyWindow:
    """A window that opens on each of `days` at local `start` and closes at local `end`."""

    days: frozenset[Weekday]
    start: time
    end: time

    def __post_init__(self) -> None:
        days = frozenset(Weekday(d) for d in self.days)
        if not days:
            raise ValueError("a weekly window needs at least one day")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("weekly window times are local wall times and must be naive")
        object.__setattr__(self, "days", days)

    @property
    def overnight(self) -> bool:
        """True when the window closes on the day after it opens (including 24-hour windows)."""
        return self.end <= self.start

    @property
    def length_us(self) -> int:
        """Wall-clock length in microseconds (a full day when `end == start`)."""
        length = _time_us(self.end) - _time_us(self.start)
        return length if length > 0 else length + DAY_US

    def weekly_spans(self) -> list[tuple[int, int]]:
        """Half-open spans on the weekly wall-clock circle, in microseconds from Monday 00:00.

        A span that wraps past Sunday midnight is split in two, so every span lies in
        [0, WEEK_US).
        """
        spans: list[tuple[int, int]] = []
        for day in self.days:
            begin = day * DAY_US + _time_us(self.start)
            finish = begin + self.length_us
            if finish <= WEEK_US:
                spans.append((begin, finish))
            else:
                spans.append((begin, WEEK_US))
                spans.append((0, finish - WEEK_US))
        return sorted(spans)

    def describe(self) -> str:
        """Human description such as "Mon, Tue 09:00-12:00" (with an en dash between times).

        Overnight windows end with " (next day)", 24-hour windows with " (24 hours)".
        """
        times = f"{_format_time(self.start)}{_DASH}{_format_time(self.end)}"
        text = f"{_describe_days(self.days)} {times}"
        if self.end == self.start:
            return text + " (24 hours)"
        if self.overnight:
            return text + " (next day)"
        return text


def overlaps(a: WeeklyWindow, b: WeeklyWindow) -> bool:
    """True when the two windows share some wall-clock time in the week.

    Windows are half-open, so one closing at 12:00 and another opening at 12:00 do not
    overlap. Overnight windows wrap into the next day, and Sunday wraps into Monday.
    """
    return any(
        max(s1, s2) < min(e1, e2) for s1, e1 in a.weekly_spans() for s2, e2 in b.weekly_spans()
    )


def weekly_open_spans(
    sessions: Iterable[WeeklyWindow], blackouts: Iterable[WeeklyWindow]
) -> list[tuple[int, int]]:
    """Wall-clock spans of the week inside some session and outside every blackout."""
    open_spans = union(span for w in sessions for span in w.weekly_spans())
    closed = union(span for w in blackouts for span in w.weekly_spans())
    return subtract(open_spans, closed)


@dataclass(frozen=True)
class DateClosure:
    """Local calendar dates `start`..`end` (inclusive) on which the site is closed all day."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"closure ends ({self.end}) before it starts ({self.start})")

    def contains(self, day: date) -> bool:
        """True when `day` is one of the closed dates."""
        return self.start <= day <= self.end

    def describe(self) -> str:
        """Human description, e.g. "closed 2025-12-25 to 2025-12-26"."""
        if self.start == self.end:
            return f"closed {self.start.isoformat()}"
        return f"closed {self.start.isoformat()} to {self.end.isoformat()}"
