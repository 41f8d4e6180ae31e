"""Hypothesis strategies shared by the domain tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from hypothesis import strategies as st

from shared.domain.schedule import RatePace, Schedule, StaggerPace
from shared.domain.ticks import grid_offset
from shared.domain.weekly import DateClosure, Weekday, WeeklyWindow

ZONES = ("Europe/London", "Australia/Sydney", "America/New_York", "UTC")

# Clock changes near which start instants are drawn (UTC), per zone.
CLOCK_CHANGES = {
    "Europe/London": (
        datetime(2025, 3, 30, 1, tzinfo=UTC),
        datetime(2025, 10, 26, 1, tzinfo=UTC),
        datetime(2026, 3, 29, 1, tzinfo=UTC),
    ),
    "Australia/Sydney": (
        datetime(2025, 4, 5, 16, tzinfo=UTC),  # 03:00 AEDT -> 02:00 AEST on Sun 6 Apr
        datetime(2025, 10, 4, 16, tzinfo=UTC),  # 02:00 AEST -> 03:00 AEDT on Sun 5 Oct
        datetime(2026, 4, 4, 16, tzinfo=UTC),
    ),
    "America/New_York": (
        datetime(2025, 3, 9, 7, tzinfo=UTC),
        datetime(2025, 11, 2, 6, tzinfo=UTC),
        datetime(2026, 3, 8, 7, tzinfo=UTC),
    ),
    "UTC": (datetime(2025, 3, 30, 1, tzinfo=UTC),),
}

# Quarter hours, with the small hours (where clocks change) drawn more often.
wall_times = st.one_of(
    st.builds(time, st.integers(0, 4), st.sampled_from([0, 15, 30, 45])),
    st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45])),
)


@st.composite
def weekly_windows(draw: st.DrawFn) -> WeeklyWindow:
    days = draw(st.frozensets(st.sampled_from(list(Weekday)), min_size=1))
    return WeeklyWindow(days, draw(wall_times), draw(wall_times))


@st.composite
def closures_near(draw: st.DrawFn, around: date) -> tuple[DateClosure, ...]:
    result = []
    for _ in range(draw(st.integers(0, 2))):
        first = around + timedelta(days=draw(st.integers(-10, 60)))
        result.append(DateClosure(first, first + timedelta(days=draw(st.integers(0, 9)))))
    return tuple(result)


@st.composite
def schedules_and_starts(
    draw: st.DrawFn, zones: tuple[str, ...] = ZONES
) -> tuple[Schedule, datetime]:
    zone = draw(st.sampled_from(zones))
    change = draw(st.sampled_from(CLOCK_CHANGES.get(zone, CLOCK_CHANGES["Europe/London"])))
    start = change + timedelta(minutes=draw(st.integers(-14 * 1440, 14 * 1440)))
    sessions = tuple(draw(st.lists(weekly_windows(), min_size=1, max_size=3)))
    blackouts = tuple(draw(st.lists(weekly_windows(), max_size=2)))  # may cover every session
    closures = draw(closures_near(start.date()))
    return Schedule(sessions, blackouts, closures, zone), start


STAGGER_STEPS = [timedelta(minutes=m) for m in (1, 3, 7, 15, 40, 180, 780)] + [
    timedelta(seconds=45)
]


def grid_offsets(every: timedelta) -> st.SearchStrategy[timedelta]:
    """No offset, a site's offset (`grid_offset` of a drawn site id) or any offset below `every`."""
    return st.one_of(
        st.just(timedelta(0)),
        st.text("abcdefgh-0123456789", min_size=1, max_size=12).map(
            lambda site: grid_offset(f"{site}|sms", every)
        ),
        st.integers(0, every // timedelta(seconds=1) - 1).map(lambda s: timedelta(seconds=s)),
    )


@st.composite
def stagger_paces(draw: st.DrawFn) -> StaggerPace:
    every = draw(st.sampled_from(STAGGER_STEPS))
    return StaggerPace(every, draw(st.integers(1, 3)), draw(grid_offsets(every)))


@st.composite
def rate_paces(draw: st.DrawFn) -> RatePace:
    # An email rate's grid shares its cycles' offset, which may exceed the rate's step.
    cycle = draw(st.sampled_from([timedelta(minutes=m) for m in (1, 5, 30)]))
    return RatePace(
        draw(st.sampled_from([0.05, 0.5, 1 / 7, 2.0])),
        draw(st.one_of(st.none(), st.integers(1, 40))),
        draw(grid_offsets(cycle)),
    )


paces = st.one_of(stagger_paces(), rate_paces())
