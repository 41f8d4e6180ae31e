from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.wallclock import (
    offset_at,
    require_utc,
    resolve_tz,
    to_wall,
    wall_to_utc,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "wall", "start", "end"),
    [
        # Ordinary summer time: 09:00 BST is 08:00 UTC either way.
        ("Europe/London", datetime(2025, 6, 2, 9), utc(2025, 6, 2, 8), utc(2025, 6, 2, 8)),
        # London, Sun 30 Mar 2025: 01:00 GMT jumps to 02:00 BST. 01:30 does not exist: the gap
        # ends at 01:00 UTC (= 02:00 BST), for starts and ends alike.
        ("Europe/London", datetime(2025, 3, 30, 1, 30), utc(2025, 3, 30, 1), utc(2025, 3, 30, 1)),
        # 01:00 itself is the first skipped minute; 02:00 exists (01:00 UTC).
        ("Europe/London", datetime(2025, 3, 30, 1, 0), utc(2025, 3, 30, 1), utc(2025, 3, 30, 1)),
        ("Europe/London", datetime(2025, 3, 30, 2, 0), utc(2025, 3, 30, 1), utc(2025, 3, 30, 1)),
        # London, Sun 26 Oct 2025: 02:00 BST falls back to 01:00 GMT. 01:30 happens twice:
        # 01:30 BST = 00:30 UTC (start) and 01:30 GMT = 01:30 UTC (end).
        (
            "Europe/London",
            datetime(2025, 10, 26, 1, 30),
            utc(2025, 10, 26, 0, 30),
            utc(2025, 10, 26, 1, 30),
        ),
        # Sydney, Sun 5 Oct 2025: 02:00 AEST jumps to 03:00 AEDT = Sat 4 Oct 16:00 UTC.
        (
            "Australia/Sydney",
            datetime(2025, 10, 5, 2, 30),
            utc(2025, 10, 4, 16),
            utc(2025, 10, 4, 16),
        ),
        # Sydney, Sun 6 Apr 2025: 03:00 AEDT falls back to 02:00 AEST. 02:30 AEDT = 15:30 UTC,
        # 02:30 AEST = 16:30 UTC (Saturday 5 Apr).
        (
            "Australia/Sydney",
            datetime(2025, 4, 6, 2, 30),
            utc(2025, 4, 5, 15, 30),
            utc(2025, 4, 5, 16, 30),
        ),
        # New York, Sun 9 Mar 2025: 02:00 EST jumps to 03:00 EDT = 07:00 UTC.
        ("America/New_York", datetime(2025, 3, 9, 2, 30), utc(2025, 3, 9, 7), utc(2025, 3, 9, 7)),
        # New York, Sun 2 Nov 2025: 01:30 EDT = 05:30 UTC, 01:30 EST = 06:30 UTC.
        (
            "America/New_York",
            datetime(2025, 11, 2, 1, 30),
            utc(2025, 11, 2, 5, 30),
            utc(2025, 11, 2, 6, 30),
        ),
        # Santiago skips Sun 7 Sep 2025 00:00-01:00 (-04 to -03): the gap ends at 04:00 UTC.
        ("America/Santiago", datetime(2025, 9, 7, 0, 30), utc(2025, 9, 7, 4), utc(2025, 9, 7, 4)),
        # Lord Howe Island moves by 30 minutes: Sun 5 Oct 2025 02:00 (+10:30) becomes 02:30
        # (+11), so 02:15 maps to the end of the gap, Sat 4 Oct 15:30 UTC.
        (
            "Australia/Lord_Howe",
            datetime(2025, 10, 5, 2, 15),
            utc(2025, 10, 4, 15, 30),
            utc(2025, 10, 4, 15, 30),
        ),
    ],
)
def test_wall_to_utc_rules(zone: str, wall: datetime, start: datetime, end: datetime) -> None:
    tz = resolve_tz(zone)
    assert wall_to_utc(wall, tz) == start
    assert wall_to_utc(wall, tz, closing=True) == end


ZONES = ["Europe/London", "Australia/Sydney", "America/New_York", "America/Santiago", "UTC"]
instants = st.integers(0, 4 * 366 * 24 * 60).map(lambda m: utc(2024, 1, 1) + timedelta(minutes=m))
walls = st.integers(0, 4 * 366 * 24 * 4).map(
    lambda q: datetime(2024, 1, 1) + timedelta(minutes=15 * q)
)


@given(st.sampled_from(ZONES), instants)
def test_every_instant_is_recovered_from_its_wall_time(zone: str, instant: datetime) -> None:
    tz = resolve_tz(zone)
    wall = to_wall(instant, tz)
    # A repeated wall time brackets the instant between its two readings.
    assert wall_to_utc(wall, tz) <= instant <= wall_to_utc(wall, tz, closing=True)
    # A wall time that happens once maps straight back.
    if wall_to_utc(wall, tz) == wall_to_utc(wall, tz, closing=True):
        assert wall_to_utc(wall, tz) == instant


@given(st.sampled_from(ZONES), walls, walls)
def test_wall_to_utc_never_runs_backwards(zone: str, a: datetime, b: datetime) -> None:
    tz = resolve_tz(zone)
    a, b = min(a, b), max(a, b)
    assert wall_to_utc(a, tz) <= wall_to_utc(b, tz)
    assert wall_to_utc(a, tz, closing=True) <= wall_to_utc(b, tz, closing=True)
    assert wall_to_utc(a, tz) <= wall_to_utc(a, tz, closing=True)


def test_offset_at() -> None:
    assert offset_at(utc(2025, 1, 15), resolve_tz("Australia/Sydney")) == timedelta(hours=11)
    assert offset_at(utc(2025, 7, 15), resolve_tz("Australia/Sydney")) == timedelta(hours=10)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="unknown IANA time zone"):
        resolve_tz("Europe/Atlantis")
    with pytest.raises(ValueError, match="naive"):
        wall_to_utc(utc(2025, 1, 1), resolve_tz("UTC"))
    with pytest.raises(ValueError, match="aware"):
        require_utc(datetime(2025, 1, 1))
    assert require_utc(datetime(2025, 1, 1, 10, tzinfo=resolve_tz("Europe/Paris"))) == utc(
        2025, 1, 1, 9
    )
