from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.quiet_hours import QuietHours
from shared.domain.wallclock import resolve_tz, to_wall


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_default_is_eight_to_nine() -> None:
    guard = QuietHours()
    assert guard.start == time(8)
    assert guard.end == time(21)
    # 07:59 and 21:00 BST are outside; 08:00 and 20:59 inside.
    assert not guard.is_allowed(utc(2025, 6, 2, 6, 59), "Europe/London")
    assert guard.is_allowed(utc(2025, 6, 2, 7, 0), "Europe/London")
    assert guard.is_allowed(utc(2025, 6, 2, 19, 59), "Europe/London")
    assert not guard.is_allowed(utc(2025, 6, 2, 20, 0), "Europe/London")


def test_recipient_zone_decides() -> None:
    # 23:00 UTC is 09:00 AEST next morning in Sydney and 19:00 EDT in New York.
    instant = utc(2025, 6, 2, 23)
    assert QuietHours().is_allowed(instant, "Australia/Sydney")
    assert QuietHours().is_allowed(instant, "America/New_York")
    assert not QuietHours().is_allowed(instant, "Europe/London")


@pytest.mark.parametrize(
    ("instant", "zone", "expected"),
    [
        # Allowed already: unchanged.
        (utc(2025, 6, 2, 12), "Europe/London", utc(2025, 6, 2, 12)),
        # 22:00 BST Monday: next is 08:00 BST Tuesday = 07:00 UTC.
        (utc(2025, 6, 2, 21), "Europe/London", utc(2025, 6, 3, 7)),
        # Sat 29 Mar 2025 22:00 GMT: Sunday 08:00 is BST already, 07:00 UTC.
        (utc(2025, 3, 29, 22), "Europe/London", utc(2025, 3, 30, 7)),
        # Sat 25 Oct 2025 22:00 BST (21:00 UTC): Sunday 08:00 is GMT, 08:00 UTC.
        (utc(2025, 10, 25, 21), "Europe/London", utc(2025, 10, 26, 8)),
        # Sydney, Sat 4 Oct 2025 23:00 AEST (13:00 UTC): Sunday 08:00 AEDT = Sat 21:00 UTC.
        (utc(2025, 10, 4, 13), "Australia/Sydney", utc(2025, 10, 4, 21)),
        # New York, Sun 2 Nov 2025 06:00 EST (11:00 UTC): 08:00 EST = 13:00 UTC.
        (utc(2025, 11, 2, 11), "America/New_York", utc(2025, 11, 2, 13)),
    ],
)
def test_next_allowed(instant: datetime, zone: str, expected: datetime) -> None:
    assert QuietHours().next_allowed(instant, zone) == expected


def test_window_starting_in_a_gap_opens_when_the_gap_ends() -> None:
    guard = QuietHours(time(1, 30), time(5))
    # London Sun 30 Mar 2025: 01:30 does not exist; 02:00 BST = 01:00 UTC is the first allowed.
    assert guard.next_allowed(utc(2025, 3, 30, 0, 10), "Europe/London") == utc(2025, 3, 30, 1)


def test_wall_clock_jumping_back_into_the_window() -> None:
    guard = QuietHours(time(1), time(1, 30))
    # London Sun 26 Oct 2025: 01:30 BST (00:30 UTC) is past the window, but at 01:00 UTC the
    # clock falls back to 01:00 GMT and the window opens again.
    assert not guard.is_allowed(utc(2025, 10, 26, 0, 40), "Europe/London")
    assert guard.next_allowed(utc(2025, 10, 26, 0, 40), "Europe/London") == utc(2025, 10, 26, 1)


def test_overnight_and_all_day_windows() -> None:
    night = QuietHours(time(22), time(6))
    assert night.is_allowed(utc(2025, 6, 2, 23), "UTC")
    assert night.is_allowed(utc(2025, 6, 2, 5), "UTC")
    assert not night.is_allowed(utc(2025, 6, 2, 12), "UTC")
    assert night.next_allowed(utc(2025, 6, 2, 12), "UTC") == utc(2025, 6, 2, 22)
    assert QuietHours(time(9), time(9)).is_allowed(utc(2025, 6, 2, 3), "UTC")


@given(
    st.sampled_from(["Europe/London", "Australia/Sydney", "America/New_York", "America/Santiago"]),
    st.integers(0, 3 * 366 * 24 * 4),
    st.sampled_from(
        [(time(8), time(21)), (time(1, 15), time(2, 45)), (time(23), time(2)), (time(0), time(1))]
    ),
)
def test_next_allowed_is_the_first_allowed_minute(
    zone: str, quarter: int, window: tuple[time, time]
) -> None:
    guard = QuietHours(*window)
    instant = utc(2024, 1, 1) + timedelta(minutes=15 * quarter)
    found = guard.next_allowed(instant, zone)
    assert found >= instant
    assert guard.is_allowed(found, zone)
    # Every minute before it is refused (walked minute by minute; minutes align with changes).
    tz = resolve_tz(zone)
    probe = instant
    while probe < found:
        assert not guard._allows_wall(to_wall(probe, tz).time())
        probe += timedelta(minutes=1)
