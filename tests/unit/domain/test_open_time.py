from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.open_time import WeeklyCalendar, iter_open_intervals, open_intervals
from shared.domain.schedule import Schedule
from shared.domain.wallclock import offset_at, to_wall
from shared.domain.weekly import DateClosure, Weekday, WeeklyWindow

from .strategies import schedules_and_starts

SAT = frozenset({Weekday.SAT})
SUN = frozenset({Weekday.SUN})
EVERY_DAY = frozenset(Weekday)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def window(days: frozenset[Weekday], start: str, end: str) -> WeeklyWindow:
    return WeeklyWindow(days, time.fromisoformat(start), time.fromisoformat(end))


def intervals_on(
    sessions: list[WeeklyWindow],
    zone: str,
    start: datetime,
    end: datetime,
    blackouts: list[WeeklyWindow] | None = None,
    closures: list[DateClosure] | None = None,
) -> list[tuple[datetime, datetime]]:
    return open_intervals(sessions, blackouts or [], closures or [], zone, start, end)


# London changes: Sun 30 Mar 2025 01:00 GMT -> 02:00 BST (01:00 UTC);
#                 Sun 26 Oct 2025 02:00 BST -> 01:00 GMT (01:00 UTC).
SPRING = (utc(2025, 3, 29), utc(2025, 3, 31))
AUTUMN = (utc(2025, 10, 25), utc(2025, 10, 27))


def test_session_across_the_skipped_hour_is_shorter() -> None:
    # 00:30 GMT = 00:30 UTC; 03:30 BST = 02:30 UTC: 2 h of real time.
    got = intervals_on([window(SUN, "00:30", "03:30")], "Europe/London", *SPRING)
    assert got == [(utc(2025, 3, 30, 0, 30), utc(2025, 3, 30, 2, 30))]


def test_session_starting_in_the_gap_opens_when_the_gap_ends() -> None:
    # 01:30 does not exist: open at 02:00 BST = 01:00 UTC; 03:00 BST = 02:00 UTC.
    got = intervals_on([window(SUN, "01:30", "03:00")], "Europe/London", *SPRING)
    assert got == [(utc(2025, 3, 30, 1), utc(2025, 3, 30, 2))]


def test_session_wholly_inside_the_gap_is_empty_that_day() -> None:
    got = intervals_on([window(SUN, "01:10", "01:50")], "Europe/London", *SPRING)
    assert got == []
    # The next Sunday it exists again (BST): 00:10-00:50 UTC.
    week_later = intervals_on(
        [window(SUN, "01:10", "01:50")], "Europe/London", utc(2025, 4, 5), utc(2025, 4, 7)
    )
    assert week_later == [(utc(2025, 4, 6, 0, 10), utc(2025, 4, 6, 0, 50))]


def test_overnight_session_across_the_skipped_hour() -> None:
    # Sat 23:00 GMT = 23:00 UTC to Sun 02:00 BST = 01:00 UTC: two hours instead of three.
    got = intervals_on([window(SAT, "23:00", "02:00")], "Europe/London", *SPRING)
    assert got == [(utc(2025, 3, 29, 23), utc(2025, 3, 30, 1))]


def test_session_across_the_repeated_hour_is_longer() -> None:
    # 00:00 BST = Sat 23:00 UTC; 04:00 GMT = 04:00 UTC: five hours.
    got = intervals_on([window(SUN, "00:00", "04:00")], "Europe/London", *AUTUMN)
    assert got == [(utc(2025, 10, 25, 23), utc(2025, 10, 26, 4))]


def test_ambiguous_start_is_earlier_and_ambiguous_end_is_later() -> None:
    # 01:00 BST = 00:00 UTC (earlier reading); 01:30 GMT = 01:30 UTC (later reading).
    got = intervals_on([window(SUN, "01:00", "01:30")], "Europe/London", *AUTUMN)
    assert got == [(utc(2025, 10, 26, 0), utc(2025, 10, 26, 1, 30))]


def test_blackout_in_the_repeated_hour_covers_both_readings() -> None:
    # Blackout 01:10 BST (00:10 UTC) to 01:20 GMT (01:20 UTC).
    got = intervals_on(
        [window(SUN, "00:00", "04:00")],
        "Europe/London",
        *AUTUMN,
        blackouts=[window(SUN, "01:10", "01:20")],
    )
    assert got == [
        (utc(2025, 10, 25, 23), utc(2025, 10, 26, 0, 10)),
        (utc(2025, 10, 26, 1, 20), utc(2025, 10, 26, 4)),
    ]


def test_sydney_sessions_across_both_changes() -> None:
    # Sun 6 Apr 2025 03:00 AEDT -> 02:00 AEST: 01:00 AEDT = Sat 14:00 UTC, 04:00 AEST = 18:00 UTC.
    april = intervals_on(
        [window(SUN, "01:00", "04:00")], "Australia/Sydney", utc(2025, 4, 5), utc(2025, 4, 6)
    )
    assert april == [(utc(2025, 4, 5, 14), utc(2025, 4, 5, 18))]
    # Sun 5 Oct 2025 02:00 AEST -> 03:00 AEDT: 01:00 AEST = Sat 15:00 UTC, 04:00 AEDT = 17:00 UTC.
    october = intervals_on(
        [window(SUN, "01:00", "04:00")], "Australia/Sydney", utc(2025, 10, 4), utc(2025, 10, 5)
    )
    assert october == [(utc(2025, 10, 4, 15), utc(2025, 10, 4, 17))]


def test_closure_removes_whole_local_days() -> None:
    sessions = [window(EVERY_DAY, "22:00", "02:00")]
    closures = [DateClosure(date(2025, 6, 4), date(2025, 6, 4))]
    got = intervals_on(
        sessions, "Europe/London", utc(2025, 6, 3, 12), utc(2025, 6, 5, 12), closures=closures
    )
    # Tue 22:00 BST (21:00 UTC) until Wed 00:00 BST (Tue 23:00 UTC), when the closed day starts;
    # Wednesday night's session reopens at Thu 00:00 BST (Wed 23:00 UTC) until 02:00 BST.
    assert got == [
        (utc(2025, 6, 3, 21), utc(2025, 6, 3, 23)),
        (utc(2025, 6, 4, 23), utc(2025, 6, 5, 1)),
    ]


def test_open_time_is_cut_at_local_monday_midnight() -> None:
    got = intervals_on(
        [window(SUN, "22:00", "02:00")], "Europe/London", utc(2025, 6, 8), utc(2025, 6, 10)
    )
    # Sun 22:00 BST = 21:00 UTC; cut at Mon 00:00 BST = Sun 23:00 UTC; Mon 02:00 BST = 01:00 UTC.
    assert got == [
        (utc(2025, 6, 8, 21), utc(2025, 6, 8, 23)),
        (utc(2025, 6, 8, 23), utc(2025, 6, 9, 1)),
    ]


def test_touching_sessions_merge_and_results_are_clipped() -> None:
    sessions = [
        window(frozenset({Weekday.MON}), "09:00", "12:00"),
        window(frozenset({Weekday.MON}), "12:00", "17:00"),
    ]
    got = intervals_on(sessions, "UTC", utc(2025, 6, 2, 10), utc(2025, 6, 2, 16))
    assert got == [(utc(2025, 6, 2, 10), utc(2025, 6, 2, 16))]


def test_iter_keeps_the_real_opening_of_the_first_interval() -> None:
    sessions = [window(frozenset({Weekday.MON}), "09:00", "12:00")]
    first = next(iter_open_intervals(sessions, [], [], "UTC", utc(2025, 6, 2, 10, 30)))
    assert first == (utc(2025, 6, 2, 9), utc(2025, 6, 2, 12))


def test_no_open_time_yields_nothing_and_stops() -> None:
    assert list(iter_open_intervals([], [], [], "UTC", utc(2025, 6, 2))) == []
    sessions = [window(frozenset({Weekday.MON}), "09:00", "12:00")]
    blackouts = [window(EVERY_DAY, "08:00", "13:00")]
    assert list(iter_open_intervals(sessions, blackouts, [], "UTC", utc(2025, 6, 2))) == []


def test_twenty_four_seven_is_open_all_week() -> None:
    got = intervals_on(
        [window(EVERY_DAY, "00:00", "00:00")], "UTC", utc(2025, 6, 4), utc(2025, 6, 12)
    )
    assert got == [(utc(2025, 6, 4), utc(2025, 6, 9)), (utc(2025, 6, 9), utc(2025, 6, 12))]


def _wall_open(schedule: Schedule, wall: datetime) -> bool:
    """Oracle: is this local wall time inside a session, outside blackouts and closures?"""

    def inside(windows: tuple[WeeklyWindow, ...]) -> bool:
        for w in windows:
            for back in (0, 1):
                day = wall.date() - timedelta(days=back)
                if Weekday(day.weekday()) not in w.days:
                    continue
                opens = datetime.combine(day, w.start)
                closes = datetime.combine(day + timedelta(days=1) if w.overnight else day, w.end)
                if opens <= wall < closes:
                    return True
        return False

    closed = any(c.contains(wall.date()) for c in schedule.closures)
    return inside(schedule.sessions) and not inside(schedule.blackouts) and not closed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules_and_starts(), st.integers(-20 * 24 * 60, 20 * 24 * 60))
def test_open_time_matches_wall_clock_oracle_away_from_clock_changes(
    case: tuple[Schedule, datetime], minutes: int
) -> None:
    schedule, start = case
    instant = start + timedelta(minutes=minutes)
    tz = schedule.tz
    # Within a day of a clock change the DST rules decide; those cases are tested by hand above.
    day = timedelta(hours=26)
    if not offset_at(instant - day, tz) == offset_at(instant, tz) == offset_at(instant + day, tz):
        return
    calendar = schedule.calendar()
    assert calendar.is_open(instant) == _wall_open(schedule, to_wall(instant, tz))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules_and_starts(), st.integers(1, 30))
def test_intervals_are_sorted_disjoint_clipped_and_inside_one_week(
    case: tuple[Schedule, datetime], days: int
) -> None:
    schedule, start = case
    end = start + timedelta(days=days)
    got = open_intervals(
        schedule.sessions, schedule.blackouts, schedule.closures, schedule.tz_name, start, end
    )
    calendar = WeeklyCalendar(schedule.sessions, schedule.blackouts, schedule.closures, schedule.tz)
    for begin, finish in got:
        assert start <= begin < finish <= end
        week = calendar.week_of(begin)
        assert calendar.week_start(week) <= begin
        assert finish <= calendar.week_start(week + 1)
    for (_, first_end), (second_begin, _) in itertools.pairwise(got):
        assert first_end <= second_begin
