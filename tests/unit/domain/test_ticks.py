from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.schedule import Schedule
from shared.domain.ticks import (
    count_grid_ticks,
    count_interval_ticks,
    interval_tick_instants,
    preset_tick_instants,
    session_tick_instants,
    tick_id,
)
from shared.domain.weekly import DateClosure, Weekday, WeeklyWindow

from .strategies import schedules_and_starts

SUN = frozenset({Weekday.SUN})
WEEKDAYS = frozenset({Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI})
MIN = timedelta(minutes=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_count_interval_ticks() -> None:
    s = utc(2025, 6, 2, 9)
    assert count_interval_ticks(s, s + 60 * MIN, 3 * MIN) == 20  # 09:00 ... 09:57
    assert count_interval_ticks(s, s + 61 * MIN, 3 * MIN) == 21  # and 10:00
    assert count_interval_ticks(s, s + MIN, 3 * MIN) == 1
    assert count_interval_ticks(s, s, 3 * MIN) == 0
    assert count_interval_ticks(s, s - MIN, 3 * MIN) == 0
    with pytest.raises(ValueError, match="positive"):
        count_interval_ticks(s, s + MIN, timedelta(0))


def test_interval_ticks_are_anchored_at_each_interval() -> None:
    intervals = [
        (utc(2025, 6, 2, 9), utc(2025, 6, 2, 9, 10)),
        (utc(2025, 6, 2, 9, 11), utc(2025, 6, 2, 9, 15)),
    ]
    assert list(interval_tick_instants(intervals, 4 * MIN)) == [
        utc(2025, 6, 2, 9, 0),
        utc(2025, 6, 2, 9, 4),
        utc(2025, 6, 2, 9, 8),
        utc(2025, 6, 2, 9, 11),
    ]


@given(
    st.integers(0, 10**6),
    st.integers(0, 50_000),
    st.integers(7, 10**5),  # at most about 7,000 ticks per example
    st.integers(0, 10**6),
    st.integers(0, 10**6),
)
def test_counts_match_the_ticks(a: int, length: int, every_s: int, x: int, y: int) -> None:
    start = utc(2025, 1, 1) + timedelta(seconds=a)
    end = start + timedelta(seconds=length)
    every = timedelta(seconds=every_s)
    ticks = list(interval_tick_instants([(start, end)], every))
    assert len(ticks) == count_interval_ticks(start, end, every)
    lo = utc(2025, 1, 1) + timedelta(seconds=min(x, y))
    hi = utc(2025, 1, 1) + timedelta(seconds=max(x, y))
    assert count_grid_ticks(start, lo, min(hi, end), every) == sum(1 for t in ticks if lo <= t < hi)


def test_no_tick_in_the_skipped_hour() -> None:
    schedule = Schedule((WeeklyWindow(SUN, time(0), time(4)),), (), (), "Europe/London")
    ticks = list(
        session_tick_instants(
            30 * MIN,
            schedule.sessions,
            (),
            (),
            schedule.tz_name,
            utc(2025, 3, 29),
            utc(2025, 3, 31),
        )
    )
    # Sun 30 Mar 2025 00:00 GMT to 04:00 BST (03:00 UTC), every 30 real minutes. In local time:
    # 00:00, 00:30 GMT, then 02:00, 02:30, 03:00, 03:30 BST: nothing in 01:00-02:00.
    assert ticks == [utc(2025, 3, 30, 0, m) for m in (0, 30)] + [
        utc(2025, 3, 30, h, m) for h in (1, 2) for m in (0, 30)
    ]


def test_repeated_hour_is_not_ticked_twice() -> None:
    schedule = Schedule((WeeklyWindow(SUN, time(1), time(2)),), (), (), "Europe/London")
    ticks = list(
        session_tick_instants(
            30 * MIN,
            schedule.sessions,
            (),
            (),
            schedule.tz_name,
            utc(2025, 10, 25),
            utc(2025, 10, 27),
        )
    )
    # Sun 26 Oct 2025: 01:00 BST (00:00 UTC) until 02:00 GMT (02:00 UTC): four ticks half an
    # hour apart in real time, two of them read 01:00 and 01:30 twice on the wall clock.
    assert ticks == [
        utc(2025, 10, 26, 0, 0),
        utc(2025, 10, 26, 0, 30),
        utc(2025, 10, 26, 1, 0),
        utc(2025, 10, 26, 1, 30),
    ]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules_and_starts(), st.integers(1, 5 * 24 * 60), st.sampled_from([3, 7, 25]))
def test_tick_grid_does_not_depend_on_where_a_scheduler_starts(
    case: tuple[Schedule, datetime], later: int, every_min: int
) -> None:
    schedule, start = case
    every = timedelta(minutes=every_min)
    end = start + timedelta(days=8)
    restart = start + timedelta(minutes=later)
    args = (schedule.sessions, schedule.blackouts, schedule.closures, schedule.tz_name)
    from_start = [t for t in session_tick_instants(every, *args, start, end) if t >= restart]
    assert list(session_tick_instants(every, *args, restart, end)) == from_start


def test_presets_in_the_gap_fire_when_the_gap_ends_and_repeated_ones_fire_once() -> None:
    presets = [time(1, 15), time(1, 45), time(9)]
    spring = preset_tick_instants(
        presets, [], [], [], "Europe/London", utc(2025, 3, 30), utc(2025, 3, 31)
    )
    # 01:15 and 01:45 do not exist on Sun 30 Mar: both fire once at 01:00 UTC (02:00 BST);
    # 09:00 BST is 08:00 UTC.
    assert spring == [utc(2025, 3, 30, 1), utc(2025, 3, 30, 8)]
    autumn = preset_tick_instants(
        presets, [], [], [], "Europe/London", utc(2025, 10, 25, 22), utc(2025, 10, 26, 12)
    )
    # Sun 26 Oct: 01:15 and 01:45 happen twice and fire at the BST reading only.
    assert autumn == [utc(2025, 10, 26, 0, 15), utc(2025, 10, 26, 0, 45), utc(2025, 10, 26, 9)]


def test_presets_only_fire_inside_sessions_and_outside_blackouts() -> None:
    sessions = [WeeklyWindow(WEEKDAYS, time(9), time(17))]
    blackouts = [WeeklyWindow(frozenset({Weekday.WED}), time(12), time(13))]
    closures = [DateClosure(date(2025, 6, 5), date(2025, 6, 5))]  # Thursday
    presets = [time(8), time(9), time(12, 30), time(17)]
    got = preset_tick_instants(
        presets, sessions, blackouts, closures, "UTC", utc(2025, 6, 2), utc(2025, 6, 9)
    )
    expected = [utc(2025, 6, 2, 9), utc(2025, 6, 2, 12, 30)]  # Monday: 08:00 and 17:00 are outside
    expected += [utc(2025, 6, 3, 9), utc(2025, 6, 3, 12, 30)]
    expected += [utc(2025, 6, 4, 9)]  # Wednesday 12:30 is blacked out
    expected += [utc(2025, 6, 6, 9), utc(2025, 6, 6, 12, 30)]  # Thursday closed
    assert got == expected


def test_presets_without_sessions_fire_daily_except_blackouts() -> None:
    blackouts = [WeeklyWindow(frozenset({Weekday.SAT, Weekday.SUN}), time(0), time(0))]
    got = preset_tick_instants(
        [time(7)], [], blackouts, [], "UTC", utc(2025, 6, 2), utc(2025, 6, 9)
    )
    assert got == [utc(2025, 6, d, 7) for d in range(2, 7)]


def test_tick_id_is_deterministic_and_pinned() -> None:
    instant = utc(2025, 3, 30, 1)
    # sha256("site-1|sms|2025-03-30T01:00:00.000000+00:00"), first 32 hex characters.
    assert tick_id("site-1", "sms", instant) == "e819c08e4ff8abe3adf8b9a4b87f9b9c"
    same_instant_elsewhere = instant.astimezone(Schedule((), (), (), "Australia/Sydney").tz)
    assert tick_id("site-1", "sms", same_instant_elsewhere) == tick_id("site-1", "sms", instant)
    assert tick_id("site-1", "sms", instant + timedelta(microseconds=1)) != tick_id(
        "site-1", "sms", instant
    )
    assert tick_id("site-1", "email", instant) != tick_id("site-1", "sms", instant)
    assert len(tick_id("x", "y", instant)) == 32


def test_tick_id_rejects_the_separator_and_naive_instants() -> None:
    with pytest.raises(ValueError, match="site_id"):
        tick_id("a|b", "sms", utc(2025, 1, 1))
    with pytest.raises(ValueError, match="aware"):
        tick_id("a", "sms", datetime(2025, 1, 1))
