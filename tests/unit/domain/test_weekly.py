from __future__ import annotations

from datetime import UTC, date, time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.weekly import (
    DAY_US,
    DateClosure,
    Weekday,
    WeeklyWindow,
    overlaps,
    weekly_open_spans,
)

from .strategies import weekly_windows

WEEKDAYS = frozenset({Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI})


def window(days: set[Weekday] | frozenset[Weekday], start: str, end: str) -> WeeklyWindow:
    return WeeklyWindow(frozenset(days), time.fromisoformat(start), time.fromisoformat(end))


def test_weekday_numbers_match_date_weekday() -> None:
    assert Weekday(date(2025, 6, 2).weekday()) is Weekday.MON
    assert Weekday.SUN == 6
    assert Weekday.WED.short_name == "Wed"


@pytest.mark.parametrize(
    ("w", "text"),
    [
        (window({Weekday.MON, Weekday.TUE}, "09:00", "12:00"), "Mon, Tue 09:00\u201312:00"),
        (window(WEEKDAYS, "13:30", "17:00"), "Mon\u2013Fri 13:30\u201317:00"),
        (
            window(
                {Weekday.MON, Weekday.WED, Weekday.THU, Weekday.FRI, Weekday.SUN}, "08:00", "09:00"
            ),
            "Mon, Wed\u2013Fri, Sun 08:00\u201309:00",
        ),
        (window({Weekday.FRI}, "22:00", "06:00"), "Fri 22:00\u201306:00 (next day)"),
        (window({Weekday.SAT}, "00:00", "00:00"), "Sat 00:00\u201300:00 (24 hours)"),
        (window({Weekday.SAT}, "07:15:30", "08:00"), "Sat 07:15:30\u201308:00"),
    ],
)
def test_describe(w: WeeklyWindow, text: str) -> None:
    assert w.describe() == text


def test_window_validation() -> None:
    with pytest.raises(ValueError, match="at least one day"):
        window(set(), "09:00", "10:00")
    with pytest.raises(ValueError, match="naive"):
        WeeklyWindow(frozenset({Weekday.MON}), time(9), time(10, tzinfo=UTC))


def test_days_given_as_ints_become_weekdays() -> None:
    w = WeeklyWindow(frozenset({0, 6}), time(9), time(10))  # type: ignore[arg-type]
    assert w.days == {Weekday.MON, Weekday.SUN}
    assert all(isinstance(d, Weekday) for d in w.days)


def test_lengths_and_overnight() -> None:
    assert window({Weekday.MON}, "09:00", "12:00").length_us == 3 * 3600 * 10**6
    assert not window({Weekday.MON}, "09:00", "12:00").overnight
    assert window({Weekday.MON}, "22:00", "06:00").length_us == 8 * 3600 * 10**6
    assert window({Weekday.MON}, "22:00", "06:00").overnight
    assert window({Weekday.MON}, "10:00", "10:00").length_us == DAY_US


def test_sunday_overnight_wraps_to_monday() -> None:
    spans = window({Weekday.SUN}, "22:00", "02:00").weekly_spans()
    hour = 3600 * 10**6
    assert spans == [(0, 2 * hour), (6 * DAY_US + 22 * hour, 7 * DAY_US)]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # Same day, touching at 12:00: half-open windows do not overlap.
        (window({Weekday.MON}, "09:00", "12:00"), window({Weekday.MON}, "12:00", "13:00"), False),
        (window({Weekday.MON}, "09:00", "12:01"), window({Weekday.MON}, "12:00", "13:00"), True),
        # Different days never meet in daytime.
        (window({Weekday.MON}, "09:00", "17:00"), window({Weekday.TUE}, "09:00", "17:00"), False),
        # Monday overnight reaches Tuesday 02:00.
        (window({Weekday.MON}, "22:00", "03:00"), window({Weekday.TUE}, "01:00", "02:00"), True),
        (window({Weekday.MON}, "22:00", "03:00"), window({Weekday.TUE}, "03:00", "04:00"), False),
        # Sunday overnight wraps the week into Monday morning.
        (window({Weekday.SUN}, "23:00", "01:00"), window({Weekday.MON}, "00:30", "00:45"), True),
        (window({Weekday.SUN}, "23:00", "01:00"), window({Weekday.SAT}, "00:30", "00:45"), False),
        # A 24-hour window covers its whole day and nothing of the next.
        (window({Weekday.WED}, "06:00", "06:00"), window({Weekday.THU}, "05:59", "06:00"), True),
        (window({Weekday.WED}, "06:00", "06:00"), window({Weekday.THU}, "06:00", "07:00"), False),
    ],
)
def test_overlaps_examples(a: WeeklyWindow, b: WeeklyWindow, expected: bool) -> None:
    assert overlaps(a, b) is expected
    assert overlaps(b, a) is expected


def _minutes_open(w: WeeklyWindow) -> set[int]:
    """Minutes of the week (0 = Monday 00:00) the window covers, walked one by one."""
    covered: set[int] = set()
    start = w.start.hour * 60 + w.start.minute
    length = w.length_us // (60 * 10**6)
    for day in w.days:
        for m in range(length):
            covered.add((day * 1440 + start + m) % (7 * 1440))
    return covered


@given(weekly_windows(), weekly_windows())
def test_overlaps_matches_minute_walk(a: WeeklyWindow, b: WeeklyWindow) -> None:
    assert overlaps(a, b) == bool(_minutes_open(a) & _minutes_open(b))


@given(st.lists(weekly_windows(), max_size=3), st.lists(weekly_windows(), max_size=3))
def test_weekly_open_spans_matches_minute_walk(
    sessions: list[WeeklyWindow], blackouts: list[WeeklyWindow]
) -> None:
    minute = 60 * 10**6
    expected: set[int] = set().union(*(_minutes_open(w) for w in sessions))
    expected -= set().union(*(_minutes_open(w) for w in blackouts))
    got = {
        m
        for s, e in weekly_open_spans(sessions, blackouts)
        for m in range(s // minute, e // minute)
    }
    assert got == expected


def test_date_closure() -> None:
    closure = DateClosure(date(2025, 12, 25), date(2025, 12, 26))
    assert closure.contains(date(2025, 12, 26))
    assert not closure.contains(date(2025, 12, 27))
    assert closure.describe() == "closed 2025-12-25 to 2025-12-26"
    assert DateClosure(date(2026, 1, 1), date(2026, 1, 1)).describe() == "closed 2026-01-01"
    with pytest.raises(ValueError, match="before it starts"):
        DateClosure(date(2025, 12, 26), date(2025, 12, 25))
