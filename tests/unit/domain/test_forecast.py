from __future__ import annotations

import cProfile
import pstats
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.capacity import Capacity
from shared.domain.forecast import (
    ImmediatePace,
    RatePace,
    Schedule,
    StaggerPace,
    capacity_between,
    forecast,
)
from shared.domain.ticks import session_tick_instants
from shared.domain.weekly import DateClosure, Weekday, WeeklyWindow

from .brute_force import brute_capacity, brute_force_forecast
from .strategies import paces, schedules_and_starts

WEEKDAYS = frozenset({Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI})
SUN = frozenset({Weekday.SUN})


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def office_hours(tz: str, closures: tuple[DateClosure, ...] = ()) -> Schedule:
    """Two sessions a day, Monday to Friday: 09:00-12:00 and 13:00-17:00."""
    return Schedule(
        (
            WeeklyWindow(WEEKDAYS, time(9), time(12)),
            WeeklyWindow(WEEKDAYS, time(13), time(17)),
        ),
        (),
        closures,
        tz,
    )


def small_hours(tz: str) -> Schedule:
    """Sunday 00:00-04:00 only: every clock change in London, Sydney and New York hits it."""
    return Schedule((WeeklyWindow(SUN, time(0), time(4)),), (), (), tz)


def assert_matches_brute_force(
    schedule: Schedule,
    pace: StaggerPace | RatePace,
    start: datetime,
    queued: int,
    new: int,
    horizon_days: int,
) -> None:
    fast = forecast(schedule, pace, start, queued, new, horizon_days)
    slow = brute_force_forecast(schedule, pace, start, queued, new, horizon_days)
    assert (fast.first_send, fast.last_send, fast.fit_within_horizon) == (
        slow.first_send,
        slow.last_send,
        slow.fit_within_horizon,
    )


# -- the seed's example ---------------------------------------------------------------------


def test_seed_example_100_sms_at_one_per_3_minutes_need_300_minutes() -> None:
    schedule = Schedule((WeeklyWindow(WEEKDAYS, time(8), time(18)),), (), (), "Europe/London")
    result = forecast(schedule, StaggerPace(timedelta(minutes=3)), utc(2025, 6, 2, 7), 0, 100, 7)
    assert result.session_minutes_needed == 300
    # 100 ticks 3 minutes apart inside one session: the first at 08:00 BST (07:00 UTC), the
    # last 99 * 3 = 297 minutes later; the 100th message's own interval closes at 300 minutes.
    assert result.first_send == utc(2025, 6, 2, 7)
    assert result.last_send == utc(2025, 6, 2, 11, 57)
    assert result.fit_within_horizon == 100


def test_session_minutes_count_ticks_not_messages() -> None:
    schedule = office_hours("UTC")
    pace = StaggerPace(timedelta(minutes=3), per_tick=2)
    # 101 messages at 2 a tick need 51 ticks of 3 minutes each.
    assert forecast(schedule, pace, utc(2025, 6, 2), 0, 101, 7).session_minutes_needed == 153
    rate = forecast(schedule, RatePace(8), utc(2025, 6, 2), 0, 100, 7)
    assert rate.session_minutes_needed == pytest.approx(12.5)
    assert (
        forecast(schedule, ImmediatePace(), utc(2025, 6, 2), 0, 100, 7).session_minutes_needed == 0
    )


# -- typical capacity ---------------------------------------------------------------------------


def test_capacity_per_week_and_sends_per_day() -> None:
    result = forecast(
        office_hours("Europe/London"), StaggerPace(timedelta(minutes=3)), utc(2025, 3, 26), 0, 1, 7
    )
    # 3 h + 4 h a day = 420 minutes = 140 ticks, on 5 days.
    assert result.capacity_per_week == 700
    assert result.sends_per_day == 140
    capped = forecast(office_hours("UTC"), RatePace(3, daily_cap=500), utc(2025, 6, 2), 0, 1, 7)
    # 420 minutes at 3 a minute is 1,260 a day, capped at 500.
    assert capped.capacity_per_week == 2500
    assert capped.sends_per_day == 500


# -- clock changes, hand-computed -----------------------------------------------------------------


def test_london_clock_change_weeks() -> None:
    schedule = small_hours("Europe/London")
    pace = StaggerPace(timedelta(minutes=10))
    # A normal Sunday: 00:00-04:00 is 4 h = 24 ticks.
    assert capacity_between(schedule, pace, utc(2025, 3, 17), utc(2025, 3, 24)) == 24
    # Sun 30 Mar 2025: 00:00 GMT = 00:00 UTC, 04:00 BST = 03:00 UTC: 3 h = 18 ticks.
    assert capacity_between(schedule, pace, utc(2025, 3, 24), utc(2025, 3, 31)) == 18
    # Sun 26 Oct 2025: 00:00 BST = Sat 23:00 UTC, 04:00 GMT = 04:00 UTC: 5 h = 30 ticks.
    assert capacity_between(schedule, pace, utc(2025, 10, 20), utc(2025, 10, 27)) == 30


def test_london_spring_forward_forecast() -> None:
    schedule = small_hours("Europe/London")
    pace = StaggerPace(timedelta(minutes=10))
    result = forecast(schedule, pace, utc(2025, 3, 29, 12), 0, 20, 30)
    # Sun 30 Mar: ticks 00:00, 00:10, ... 02:50 UTC (18 of them; 01:00 UTC is already 02:00
    # BST, no tick falls in the skipped hour). The 19th and 20th go on Sun 6 Apr at 00:00 and
    # 00:10 BST, which are Sat 5 Apr 23:00 and 23:10 UTC.
    assert result.first_send == utc(2025, 3, 30, 0, 0)
    assert result.last_send == utc(2025, 4, 5, 23, 10)


def test_london_fall_back_forecast() -> None:
    schedule = small_hours("Europe/London")
    pace = StaggerPace(timedelta(minutes=10))
    result = forecast(schedule, pace, utc(2025, 10, 25, 12), 0, 31, 30)
    # Sun 26 Oct: 00:00 BST = Sat 23:00 UTC to 04:00 GMT = 04:00 UTC, 30 ticks 10 minutes apart
    # in real time (the repeated 01:00-02:00 is ticked once per real instant). The 31st goes on
    # Sun 2 Nov at 00:00 GMT.
    assert result.first_send == utc(2025, 10, 25, 23, 0)
    assert result.last_send == utc(2025, 11, 2, 0, 0)
    assert forecast(schedule, pace, utc(2025, 10, 25, 12), 0, 30, 30).last_send == utc(
        2025, 10, 26, 3, 50
    )


def test_sydney_clock_change_weeks() -> None:
    schedule = Schedule((WeeklyWindow(SUN, time(1), time(4)),), (), (), "Australia/Sydney")
    pace = StaggerPace(timedelta(minutes=10))
    # Normal Sunday 01:00-04:00: 3 h = 18 ticks.
    assert capacity_between(schedule, pace, utc(2025, 3, 20), utc(2025, 3, 27)) == 18
    # Sun 6 Apr 2025, 03:00 AEDT -> 02:00 AEST: 01:00 AEDT = Sat 14:00 UTC,
    # 04:00 AEST = Sat 18:00 UTC: 4 h = 24 ticks.
    assert capacity_between(schedule, pace, utc(2025, 4, 2), utc(2025, 4, 9)) == 24
    # Sun 5 Oct 2025, 02:00 AEST -> 03:00 AEDT: 01:00 AEST = Sat 15:00 UTC,
    # 04:00 AEDT = Sat 17:00 UTC: 2 h = 12 ticks.
    assert capacity_between(schedule, pace, utc(2025, 10, 1), utc(2025, 10, 8)) == 12


# -- warnings -------------------------------------------------------------------------------------


def test_warning_when_sending_takes_too_long() -> None:
    schedule = Schedule((WeeklyWindow(WEEKDAYS, time(9), time(10)),), (), (), "UTC")
    # One tick an hour-long session a weekday at one per 30 min: 2 a weekday, 10 a week.
    result = forecast(
        schedule, StaggerPace(timedelta(minutes=30)), utc(2025, 6, 2, 8), 0, 14, 30, 5
    )
    # Mon 2 Jun .. Fri 6 Jun: 10; Mon 9 Jun: 2; Tue 10 Jun 09:00 and 09:30: the last goes
    # 8 days 1 h 30 min after the start, which is shown as 9 days.
    assert result.last_send == utc(2025, 6, 10, 9, 30)
    assert result.too_long
    assert result.warning == (
        "Sending will take 9 days; this site warns after 5 days. "
        "Shorten the interval or add delivery sessions."
    )
    in_time = forecast(
        schedule, StaggerPace(timedelta(minutes=30)), utc(2025, 6, 2, 8), 0, 14, 30, 9
    )
    assert not in_time.too_long
    assert in_time.warning is None


def test_rate_warning_suggests_a_higher_rate() -> None:
    schedule = Schedule((WeeklyWindow(WEEKDAYS, time(9), time(10)),), (), (), "UTC")
    result = forecast(schedule, RatePace(1, daily_cap=10), utc(2025, 6, 2, 8), 0, 100, 30, 1.5)
    assert result.warning is not None
    assert "Raise the sending rate or add delivery sessions." in result.warning
    assert "warns after 1.5 days" in result.warning


def test_no_sessions_means_nothing_is_ever_sent() -> None:
    schedule = Schedule((), (), (), "Europe/London")
    result = forecast(schedule, StaggerPace(timedelta(minutes=3)), utc(2025, 6, 2), 5, 10, 30, 5)
    assert result.first_send is None
    assert result.last_send is None
    assert result.fit_within_horizon == 0
    assert result.capacity_per_week == 0
    assert result.too_long
    assert result.warning == "Nothing can be sent: the delivery sessions leave no open time."


def test_sessions_fully_blacked_out_send_nothing() -> None:
    session = WeeklyWindow(WEEKDAYS, time(9), time(12))
    schedule = Schedule(
        (session,), (WeeklyWindow(frozenset(Weekday), time(8), time(13)),), (), "UTC"
    )
    result = forecast(schedule, RatePace(2), utc(2025, 6, 2), 0, 1, 30)
    assert result.last_send is None
    assert result.capacity_per_week == 0


def test_too_far_is_reported_not_computed() -> None:
    schedule = Schedule((WeeklyWindow(SUN, time(9), time(9, 1)),), (), (), "Europe/London")
    result = forecast(schedule, StaggerPace(timedelta(minutes=1)), utc(2025, 6, 2), 0, 20_000, 30)
    assert result.last_send is None  # one a week: 20,000 weeks is more than 200 years
    assert result.warning == "Sending would take more than 200 years."


def test_explanation_mentions_queue_and_horizon() -> None:
    result = forecast(
        office_hours("Europe/London"),
        StaggerPace(timedelta(minutes=3)),
        utc(2025, 6, 2),
        12,
        100,
        14,
    )
    text = "\n".join(result.explanation)
    assert "12 already queued go first." in text
    assert "A normal week holds 700 sends over 5 open days (about 140 a day)." in text
    assert "100 of 100 new messages go within 14 days." in text


def test_input_validation() -> None:
    schedule = office_hours("UTC")
    pace = StaggerPace(timedelta(minutes=3))
    with pytest.raises(ValueError, match="aware"):
        forecast(schedule, pace, datetime(2025, 6, 2), 0, 1, 7)
    with pytest.raises(ValueError, match="negative"):
        forecast(schedule, pace, utc(2025, 6, 2), -1, 1, 7)
    with pytest.raises(ValueError, match="warn_after_days"):
        forecast(schedule, pace, utc(2025, 6, 2), 0, 1, 7, 0)
    with pytest.raises(ValueError, match="immediate"):
        capacity_between(schedule, ImmediatePace(), utc(2025, 6, 2), utc(2025, 6, 9))
    with pytest.raises(ValueError, match="unknown IANA"):
        Schedule((), (), (), "Mars/Olympus_Mons")


# -- immediate --------------------------------------------------------------------------------


def test_immediate_goes_at_the_first_open_instant() -> None:
    schedule = office_hours("Europe/London")
    inside = forecast(schedule, ImmediatePace(), utc(2025, 6, 2, 9, 30), 3, 50, 1)
    assert inside.first_send == inside.last_send == utc(2025, 6, 2, 9, 30)
    assert inside.fit_within_horizon == 50
    # Friday 31 Oct 2025 17:00 GMT: next open time is Monday 3 Nov 09:00 GMT.
    after = forecast(schedule, ImmediatePace(), utc(2025, 10, 31, 17), 0, 50, 1)
    assert after.first_send == utc(2025, 11, 3, 9)
    assert after.fit_within_horizon == 0  # a one-day horizon ends before Monday
    assert after.capacity_per_week is None
    assert after.sends_per_day is None


def test_immediate_respects_closures() -> None:
    schedule = office_hours("Europe/London", (DateClosure(date(2025, 12, 24), date(2026, 1, 1)),))
    result = forecast(schedule, ImmediatePace(), utc(2025, 12, 23, 18), 0, 5, 30)
    assert result.first_send == utc(2026, 1, 2, 9)


# -- closures -----------------------------------------------------------------------------------


def test_closure_removes_whole_days() -> None:
    schedule = office_hours("UTC", (DateClosure(date(2025, 6, 3), date(2025, 6, 4)),))
    pace = StaggerPace(timedelta(minutes=3))
    # Tuesday and Wednesday closed: 3 of 5 weekdays at 140 ticks.
    assert capacity_between(schedule, pace, utc(2025, 6, 2), utc(2025, 6, 9)) == 420


# -- agreement with walking every slot ----------------------------------------------------------


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    schedules_and_starts(),
    paces,
    st.integers(0, 300),
    st.integers(0, 300),
    st.integers(0, 60),
)
def test_forecast_equals_brute_force(
    case: tuple[Schedule, datetime],
    pace: StaggerPace | RatePace,
    queued: int,
    new: int,
    horizon_days: int,
) -> None:
    schedule, start = case
    assert_matches_brute_force(schedule, pace, start, queued, new, horizon_days)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules_and_starts(), paces, st.integers(0, 40 * 24 * 60))
def test_capacity_between_equals_brute_force(
    case: tuple[Schedule, datetime], pace: StaggerPace | RatePace, minutes: int
) -> None:
    schedule, start = case
    end = start + timedelta(minutes=minutes)
    assert capacity_between(schedule, pace, start, end) == brute_capacity(
        schedule, pace, start, end
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules_and_starts(), st.sampled_from([timedelta(minutes=m) for m in (3, 7, 60)]))
def test_ticks_in_a_week_equal_capacity_of_that_week(
    case: tuple[Schedule, datetime], every: timedelta
) -> None:
    schedule, start = case
    end = start + timedelta(days=7)
    ticks = list(
        session_tick_instants(
            every,
            schedule.sessions,
            schedule.blackouts,
            schedule.closures,
            schedule.tz_name,
            start,
            end,
        )
    )
    assert len(ticks) == capacity_between(schedule, StaggerPace(every), start, end)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    schedules_and_starts(),
    st.sampled_from([timedelta(hours=h) for h in (5, 13, 25)]),
    st.integers(0, 50),
    st.integers(100, 800),
    st.integers(0, 800),
)
def test_sparse_schedules_over_years_equal_brute_force(
    case: tuple[Schedule, datetime], every: timedelta, queued: int, new: int, horizon_days: int
) -> None:
    # A few ticks a week: hundreds of messages take years, through many clock changes.
    schedule, start = case
    assert_matches_brute_force(schedule, StaggerPace(every), start, queued, new, horizon_days)


# -- long spans: still exact --------------------------------------------------------------------

LONG_CASES = [
    # zone, start, every, new messages: each spans more than two years of clock changes.
    ("Europe/London", utc(2025, 1, 8, 10), timedelta(minutes=7), 6_000),
    ("Australia/Sydney", utc(2025, 5, 1, 3), timedelta(minutes=9), 5_000),
    ("America/New_York", utc(2025, 11, 1, 23), timedelta(minutes=11), 4_000),
]


@pytest.mark.parametrize(("zone", "start", "every", "new"), LONG_CASES)
def test_multi_year_forecast_equals_brute_force(
    zone: str, start: datetime, every: timedelta, new: int
) -> None:
    # Small hours on Sunday catch every clock change; a Saturday-night session and a blackout
    # inside the changing hour make the changes cost different amounts.
    schedule = Schedule(
        (
            WeeklyWindow(SUN, time(0, 15), time(3, 45)),
            WeeklyWindow(frozenset({Weekday.SAT}), time(22), time(1, 30)),
        ),
        (WeeklyWindow(SUN, time(2, 10), time(2, 20)),),
        (
            DateClosure(date(2026, 3, 1), date(2026, 3, 3)),
            DateClosure(date(2027, 12, 25), date(2027, 12, 27)),
        ),
        zone,
    )
    pace = StaggerPace(every)
    assert_matches_brute_force(schedule, pace, start, 17, new, 400)
    slow = brute_force_forecast(schedule, pace, start, 17, new, 400)
    assert slow.last_send is not None
    assert slow.last_send - start > timedelta(days=2 * 366)


def test_thirty_years_equal_brute_force() -> None:
    schedule = small_hours("Europe/London")
    pace = StaggerPace(timedelta(minutes=10))
    start = utc(2025, 2, 3, 12)
    # About 24 ticks a week for 30 years: every spring and autumn week counted by arithmetic.
    assert_matches_brute_force(schedule, pace, start, 0, 37_500, 3650)
    assert capacity_between(schedule, pace, start, utc(2055, 7, 1)) == brute_capacity(
        schedule, pace, start, utc(2055, 7, 1)
    )


@pytest.mark.parametrize("zone", ["Africa/Casablanca", "Asia/Gaza", "America/Santiago"])
def test_irregular_zones_equal_brute_force(zone: str) -> None:
    # Casablanca and Gaza move their clocks around Ramadan, which drifts through the calendar:
    # the yearly check fails and every change is counted. Santiago changes at midnight.
    schedule = Schedule(
        (WeeklyWindow(frozenset(Weekday), time(0), time(3, 30)),),
        (WeeklyWindow(frozenset({Weekday.MON}), time(1), time(1, 30)),),
        (),
        zone,
    )
    pace = StaggerPace(timedelta(minutes=13))
    start = utc(2025, 1, 15, 6)
    assert_matches_brute_force(schedule, pace, start, 0, 12_000, 500)


def test_irregular_zone_falls_back_to_scanning() -> None:
    schedule = Schedule(
        (WeeklyWindow(frozenset(Weekday), time(1), time(4)),), (), (), "Africa/Casablanca"
    )
    capacity = Capacity(schedule, timedelta(minutes=13), None, utc(2025, 1, 15, 6))
    assert not capacity.pattern_checked
    regular = Capacity(
        small_hours("Europe/London"), timedelta(minutes=10), None, utc(2025, 1, 15, 6)
    )
    assert regular.pattern_checked


# -- cost does not grow with N ----------------------------------------------------------------


def _calls(schedule: Schedule, new: int) -> int:
    profile = cProfile.Profile()
    profile.enable()
    forecast(schedule, StaggerPace(timedelta(minutes=3)), utc(2025, 6, 2, 7, 13), 0, new, 30, 5)
    profile.disable()
    return pstats.Stats(profile).total_calls  # type: ignore[attr-defined, no-any-return]


@pytest.mark.parametrize("zone", ["Europe/London", "Australia/Sydney"])
def test_work_does_not_grow_with_the_number_of_messages(zone: str) -> None:
    # Function calls are a deterministic measure of work; timings live in the benchmarks.
    schedule = Schedule(
        (
            WeeklyWindow(WEEKDAYS, time(9), time(12)),
            WeeklyWindow(frozenset({Weekday.SAT, Weekday.SUN}), time(1), time(4)),
        ),
        (),
        (DateClosure(date(2025, 12, 25), date(2025, 12, 26)),),
        zone,
    )
    small = _calls(schedule, 10)
    large = _calls(schedule, 1_000_000)
    huge = _calls(schedule, 10_000_000)
    assert large <= 1.5 * small
    assert huge <= 1.5 * small


# -- a zone whose rule changes after the first years --------------------------------------------


@pytest.mark.parametrize("after", ["no-dst", "monday"])
def test_rule_change_in_a_later_year_is_detected_and_counted_exactly(
    monkeypatch: pytest.MonkeyPatch, after: Literal["no-dst", "monday"]
) -> None:
    import shared.domain.open_time
    import shared.domain.schedule
    from shared.domain.wallclock import resolve_tz

    from .fake_zone import RuleChangeZone

    zone = RuleChangeZone(last_regular_year=2028, after=after)

    def resolve(name: str) -> tzinfo:
        return zone if name == "Test/RuleChange" else resolve_tz(name)

    monkeypatch.setattr(shared.domain.schedule, "resolve_tz", resolve)
    monkeypatch.setattr(shared.domain.open_time, "resolve_tz", resolve)
    # Sunday small hours only: a change on Sunday costs 6 ticks, one on Monday costs none, so
    # trusting the first two years would miscount every year from 2029.
    schedule = small_hours("Test/RuleChange")
    pace = StaggerPace(timedelta(minutes=10))
    start = utc(2025, 1, 15, 6)
    assert_matches_brute_force(schedule, pace, start, 0, 12_000, 400)  # about ten years
    capacity = Capacity(schedule, pace.every, None, start)
    assert capacity.pattern_checked
    capacity.count_to(utc(2034, 6, 1))
    assert not capacity.pattern_checked  # the later years failed the check
