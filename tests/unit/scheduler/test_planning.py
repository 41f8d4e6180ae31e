"""The scheduler's cursors give exactly the shared domain's instants; plans follow settings."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.scheduler.domain.planning import (
    OpenTime,
    Recheck,
    Slot,
    account_slot,
    account_terms,
    next_interval_slot,
    next_open_instant,
    next_preset_slot,
    open_time,
    outside_blackouts,
    plan_site,
)
from shared.domain.accounts import email_account_id, sms_account_id
from shared.domain.planning import plan
from shared.domain.schedule import RatePace, Schedule, StaggerPace
from shared.domain.site_settings import SiteSettings
from shared.domain.ticks import grid_offset, preset_tick_instants, session_tick_instants
from shared.domain.weekly import DateClosure, Weekday, WeeklyWindow
from tests.unit.domain.strategies import schedules_and_starts

MICRO = timedelta(microseconds=1)
WEEKDAYS = frozenset(Weekday) - {Weekday.SAT, Weekday.SUN}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def walk(
    schedule: Schedule,
    every: timedelta,
    start: datetime,
    end: datetime,
    offset: timedelta = timedelta(0),
) -> list[datetime]:
    """Instants the timer would visit: first slot from `start`, then each next from the last."""
    found: list[datetime] = []
    slot = next_interval_slot(open_time(schedule), every, start, offset)
    while isinstance(slot, Slot) and slot.instant < end:
        found.append(slot.instant)
        slot = next_interval_slot(open_time(schedule), every, slot.instant + MICRO, offset)
    return found


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    schedules_and_starts(),
    st.sampled_from([timedelta(minutes=m) for m in (1, 3, 20, 45, 180)]),
    st.text("abcxyz-0123456789", min_size=1, max_size=10),
)
def test_interval_cursor_matches_session_tick_instants(
    case: tuple[Schedule, datetime], every: timedelta, site_id: str
) -> None:
    schedule, start = case
    end = start + timedelta(days=16)
    offset = grid_offset(f"{site_id}|sms", every)
    expected = list(
        session_tick_instants(
            every,
            schedule.sessions,
            schedule.blackouts,
            schedule.closures,
            schedule.tz_name,
            start,
            end,
            offset,
        )
    )
    assert walk(schedule, every, start, end, offset) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    schedules_and_starts(),
    st.lists(
        st.sampled_from([time(0, 30), time(1, 30), time(2, 15), time(9), time(23, 45)]),
        min_size=1,
        max_size=3,
        unique=True,
    ),
)
def test_preset_cursor_matches_preset_tick_instants(
    case: tuple[Schedule, datetime], presets: list[time]
) -> None:
    schedule, start = case
    end = start + timedelta(days=10)
    times = tuple(sorted(presets))
    expected = preset_tick_instants(
        times,
        schedule.sessions,
        schedule.blackouts,
        schedule.closures,
        schedule.tz_name,
        start,
        end,
    )
    got: list[datetime] = []
    slot = next_preset_slot(times, schedule, start)
    while isinstance(slot, Slot) and slot.instant < end:
        got.append(slot.instant)
        assert slot.instant < slot.not_after
        slot = next_preset_slot(times, schedule, slot.instant + MICRO)
    assert got == expected


@settings(max_examples=80, deadline=None)
@given(schedules_and_starts(), st.integers(0, 20_000))
def test_a_slot_is_never_usable_outside_its_open_interval(
    case: tuple[Schedule, datetime], minutes: int
) -> None:
    schedule, start = case
    every = timedelta(minutes=7)
    slot = next_interval_slot(open_time(schedule), every, start + timedelta(minutes=minutes))
    if not isinstance(slot, Slot):
        return
    interval = open_time(schedule).interval_at(slot.instant)
    assert interval is not None
    assert slot.not_after <= min(interval[1], slot.instant + every)


def test_open_time_cache_stays_small_over_years() -> None:
    schedule = Schedule((WeeklyWindow(WEEKDAYS, time(9), time(17)),), (), (), "Europe/London")
    ot = OpenTime(schedule)
    at = utc(2025, 1, 1)
    for _ in range(3 * 52):
        slot = next_interval_slot(ot, timedelta(hours=8), at)
        assert isinstance(slot, Slot)
        at = slot.instant + timedelta(days=7)
    assert len(ot._weeks) <= OpenTime.MAX_CACHED_WEEKS


def test_a_schedule_that_never_opens_has_no_slot_and_a_long_closure_rechecks_later() -> None:
    never = Schedule(
        (WeeklyWindow(WEEKDAYS, time(9), time(17)),),
        (WeeklyWindow(frozenset(Weekday), time(0), time(0)),),
        (),
        "Europe/London",
    )
    assert next_interval_slot(open_time(never), timedelta(minutes=5), utc(2025, 6, 2)) is None
    closed = Schedule(
        (WeeklyWindow(WEEKDAYS, time(9), time(17)),),
        (),
        (DateClosure(datetime(2025, 6, 1).date(), datetime(2030, 6, 1).date()),),
        "Europe/London",
    )
    first = next_interval_slot(open_time(closed), timedelta(minutes=5), utc(2025, 6, 2))
    assert isinstance(first, Recheck)
    assert utc(2027, 5, 1) < first.at < utc(2027, 7, 1)


def test_account_grid_is_anchored_on_the_epoch() -> None:
    period = timedelta(seconds=0.25)
    slot = account_slot(period, utc(2025, 6, 2, 9, 0, 0) + timedelta(microseconds=100_001))
    assert slot == Slot(
        utc(2025, 6, 2, 9) + timedelta(milliseconds=250),
        utc(2025, 6, 2, 9) + timedelta(milliseconds=500),
    )
    assert account_slot(period, slot.instant) == slot  # an instant on the grid is its own slot
    odd = account_slot(timedelta(seconds=7), utc(2025, 6, 2, 9))
    assert (odd.instant - utc(1970, 1, 1)) % timedelta(seconds=7) == timedelta(0)


def site(**data: object) -> SiteSettings:
    base: dict[str, object] = {
        "sms": {"provider": {"kind": "simulator", "account_id": "a1"}},
        "email": {
            "enabled": True,
            "address": "x@example.com",
            "smtp": {"host": "smtp.example.com"},
        },
    }
    base.update(data)
    return SiteSettings.model_validate(base)


def test_plans_use_the_forecast_mapping() -> None:
    settings_ = site()
    plans = plan_site("s1", "g1", settings_)
    assert plans.sms is not None and plans.email is not None
    schedule, pace, _ = plan(settings_, "sms")
    assert isinstance(pace, StaggerPace)
    assert (plans.sms.schedule, plans.sms.every) == (schedule, pace.every)
    assert plans.sms.account == sms_account_id(settings_.sms.provider, "g1")
    schedule, pace, _ = plan(settings_, "email")
    assert isinstance(pace, RatePace)
    assert (plans.email.schedule, plans.email.step) == (schedule, pace.step)
    assert plans.email.account == email_account_id(settings_.email, "g1")
    assert plans.email.every == timedelta(minutes=5) and plans.email.receive


@pytest.mark.parametrize(
    ("data", "sms", "email", "note"),
    [
        ({"sms": {"provider": {"kind": "none"}}}, False, True, "provider 'none'"),
        ({"email": {"enabled": False}}, True, False, "disabled"),
        (
            {"email": {"mode": "manual", "smtp": {"host": "smtp.example.com"}}},
            True,
            False,
            "manual",
        ),
        ({"email": {"smtp": {"host": None}}}, True, False, "no SMTP"),
    ],
)
def test_channels_without_automatic_ticks(
    data: dict[str, object], sms: bool, email: bool, note: str
) -> None:
    plans = plan_site("s1", "g1", site(**data))
    assert (plans.sms is not None, plans.email is not None) == (sms, email)
    assert any(note in n for n in plans.notes)


def test_immediate_sms_joins_its_account() -> None:
    settings_ = site(
        sms={
            "mode": "immediate",
            "provider": {"kind": "simulator", "account_id": "a1", "rate_per_second": 4},
        },
        blackouts=[{"days": ["mon"], "start": "12:00", "end": "13:00"}],
    )
    plans = plan_site("s1", "g1", settings_)
    assert plans.sms is None and plans.sms_account is not None
    account, member = plans.sms_account
    assert account == sms_account_id(settings_.sms.provider, "g1")
    assert member.blackouts == outside_blackouts(settings_) == plan(settings_, "sms")[0]
    assert not member.available(utc(2025, 6, 2, 11, 30))  # Mon 12:30 BST
    assert member.available(utc(2025, 6, 2, 12, 30))
    terms = account_terms(account, [member], utc(2025, 6, 2, 12, 30), timedelta(seconds=1))
    assert terms is not None
    assert (terms.sites, terms.budget, terms.spacing_seconds) == (("s1",), 4, 0.25)
    assert account_terms(account, [member], utc(2025, 6, 2, 11, 30), timedelta(seconds=1)) is None


def test_slow_account_gets_at_least_one_message_per_tick() -> None:
    member = plan_site(
        "s1",
        "g1",
        site(
            sms={
                "mode": "immediate",
                "provider": {"kind": "simulator", "account_id": "a1", "rate_per_second": 0.1},
            }
        ),
    ).sms_account
    assert member is not None
    terms = account_terms(member[0], [member[1]], utc(2025, 6, 2), timedelta(seconds=1))
    assert terms is not None and terms.budget == 1 and terms.spacing_seconds == 10.0


def test_next_open_instant_skips_a_blackout() -> None:
    schedule = outside_blackouts(
        site(blackouts=[{"days": ["mon"], "start": "12:00", "end": "13:00"}])
    )
    ot = open_time(schedule)
    assert next_open_instant(ot, utc(2025, 6, 2, 11, 15)) == utc(2025, 6, 2, 12)
    assert next_open_instant(ot, utc(2025, 6, 2, 9)) == utc(2025, 6, 2, 9)


def test_equal_settings_make_equal_plans() -> None:
    first, second = (plan_site("s1", "g1", site()) for _ in range(2))
    assert first == second
    changed = plan_site(
        "s1",
        "g1",
        site(sms={"provider": {"kind": "simulator", "account_id": "a1"}, "every_minutes": 4}),
    )
    assert changed.sms != first.sms and changed.email == first.email
