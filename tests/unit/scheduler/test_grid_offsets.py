"""Sites' grids are spread inside the interval, and the forecast counts the very same grid."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.scheduler.domain.planning import (
    MICROSECOND,
    SitePlan,
    Slot,
    open_time,
    plan_site,
)
from shared.domain.forecast import capacity_between
from shared.domain.planning import grid_key, plan, site_forecast
from shared.domain.schedule import RatePace, StaggerPace
from shared.domain.site_settings import SiteSettings
from shared.domain.ticks import GRID_SPREAD, grid_offset

from .test_planning import site

MINUTE = timedelta(minutes=1)
site_ids = st.text("abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=16)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ticks(plan_: SitePlan, start: datetime, end: datetime) -> list[Slot]:
    """Every slot the timer would tick in [start, end), walked as the timer walks them."""
    found: list[Slot] = []
    slot = plan_.next_slot(start)
    while isinstance(slot, Slot) and slot.instant < end:
        found.append(slot)
        slot = plan_.next_slot(slot.instant + MICROSECOND)
    return found


@given(site_ids, st.sampled_from([timedelta(milliseconds=1), timedelta(seconds=1), MINUTE * 7]))
def test_offset_is_whole_milliseconds_below_the_interval_and_the_spread(
    key: str, every: timedelta
) -> None:
    offset = grid_offset(key, every)
    assert timedelta(0) <= offset < max(min(every, GRID_SPREAD), timedelta(milliseconds=1))
    assert offset % timedelta(milliseconds=1) == timedelta(0)
    assert grid_offset(key, every) == offset  # no process state: replicas agree


def test_offsets_spread_ten_thousand_sites_over_the_minute() -> None:
    offsets = [grid_offset(grid_key(f"site-{i:05d}", "sms"), MINUTE) for i in range(10_000)]
    per_second = Counter(o // timedelta(seconds=1) for o in offsets)
    assert len(per_second) == 60
    # About 167 a second; a burst at one instant would put all 10,000 in one second.
    assert max(per_second.values()) < 250
    assert max(Counter(offsets).values()) <= 5
    # Each channel of a site gets its own offset.
    assert grid_offset(grid_key("site-1", "sms"), MINUTE) != grid_offset(
        grid_key("site-1", "email"), MINUTE
    )


def test_plans_carry_the_forecast_offsets() -> None:
    settings_ = site()
    plans = plan_site("site-7", "g1", settings_)
    assert plans.sms is not None and plans.email is not None
    _, sms_pace, _ = plan(settings_, "sms", "site-7")
    _, email_pace, _ = plan(settings_, "email", "site-7")
    assert isinstance(sms_pace, StaggerPace) and isinstance(email_pace, RatePace)
    assert plans.sms.offset == sms_pace.offset == grid_offset("site-7|sms", sms_pace.every)
    assert plans.email.offset == email_pace.offset
    assert plans.email.offset == grid_offset("site-7|email", timedelta(minutes=5))
    assert plans.sms.offset != timedelta(0) or plans.email.offset != timedelta(0)
    # Without a site there is no offset: the plain grid of the forecast's documentation.
    assert plan(settings_, "sms")[1] == StaggerPace(sms_pace.every)


def london(every_minutes: float, sessions: list[tuple[str, str]]) -> SiteSettings:
    windows = [
        {"days": ["mon", "tue", "wed", "thu", "fri"], "start": a, "end": b} for a, b in sessions
    ]
    return site(
        sms={
            "provider": {"kind": "simulator", "account_id": "a"},
            "mode": "staggered",
            "every_minutes": every_minutes,
            "sessions": windows,
        },
        email={
            "enabled": True,
            "address": "x@example.com",
            "smtp": {"host": "smtp.example.com"},
            "mode": "automatic",
            "check_every_minutes": 3,
            "per_minute": 0.5,
            "sessions": windows,
        },
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    site_ids,
    st.sampled_from([1, 3, 7, 45]),
    st.sampled_from(
        [[("09:00", "17:00")], [("09:00", "09:10"), ("13:00", "13:02")], [("08:30", "08:31")]]
    ),
    st.integers(0, 7 * 24 * 60),
)
def test_scheduled_ticks_are_what_the_forecast_counts(
    site_id: str, every: int, sessions: list[tuple[str, str]], minutes: int
) -> None:
    # Short sessions make the offset matter: a 1-minute session holds a 7-minute grid's tick
    # only when the site's offset falls inside it.
    settings_ = london(every, sessions)
    plans = plan_site(site_id, "g1", settings_)
    assert plans.sms is not None and plans.email is not None
    start = utc(2025, 3, 24) + timedelta(minutes=minutes)  # Europe springs forward on the 30th
    end = start + timedelta(days=8)
    sms = ticks(plans.sms, start, end)
    schedule, pace, _ = plan(settings_, "sms", site_id)
    assert len(sms) == capacity_between(schedule, pace, start, end)
    answer = site_forecast(settings_, "sms", max(1, len(sms)), start=start, site_id=site_id)
    if sms:
        assert answer["first_send"] == sms[0].instant.isoformat()
        assert answer["last_send"] == sms[-1].instant.isoformat()
    for slot in sms:
        opened = open_time(plans.sms.schedule).interval_at(slot.instant)
        assert opened is not None and slot.anchor == opened[0] + plans.sms.offset
        assert (slot.instant - slot.anchor) % plans.sms.every == timedelta(0)
    # Email: the cycles' budgets add up to the rate's slots the forecast counts.
    email = ticks(plans.email, start, end)
    schedule, pace, _ = plan(settings_, "email", site_id)
    # The cycles cover [first cycle, last cycle's not_after).
    assert email
    assert sum(plans.email.budget(slot) for slot in email) == capacity_between(
        schedule, pace, email[0].instant, email[-1].not_after
    )
