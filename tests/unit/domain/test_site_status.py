"""The dashboard's session status and status line."""

from __future__ import annotations

from datetime import UTC, datetime, time

from shared.domain.schedule import Schedule
from shared.domain.site_status import SessionStatus, session_status, status_line
from shared.domain.weekly import Weekday, WeeklyWindow

WEEKDAYS = frozenset({Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI})
SCHEDULE = Schedule((WeeklyWindow(WEEKDAYS, time(9), time(17)),), (), (), "Europe/London")


def test_inside_a_session_it_is_open_until_its_end() -> None:
    got = session_status(SCHEDULE, datetime(2026, 12, 7, 10, tzinfo=UTC))  # a Monday
    assert got == SessionStatus(True, datetime(2026, 12, 7, 17, tzinfo=UTC), None)


def test_on_friday_evening_the_next_session_is_monday_morning() -> None:
    got = session_status(SCHEDULE, datetime(2026, 12, 11, 18, tzinfo=UTC))
    assert got == SessionStatus(False, None, datetime(2026, 12, 14, 9, tzinfo=UTC))


def test_without_sessions_there_is_no_next_one() -> None:
    empty = Schedule((), (), (), "Europe/London")
    assert session_status(empty, datetime(2026, 12, 7, tzinfo=UTC)) == SessionStatus(
        False, None, None
    )


def test_the_status_line_puts_a_hold_first() -> None:
    open_now = SessionStatus(True, None, None)
    closed = SessionStatus(False, None, None)
    assert status_line(5, "no credits", open_now) == "Held: no credits"
    assert status_line(1200, None, open_now) == "Sending now (1,200 waiting)"
    assert status_line(3, None, closed) == "3 waiting for the next session"
    assert status_line(0, None, open_now) == "Nothing waiting"
    assert status_line(None, None, open_now).startswith("Unknown")
