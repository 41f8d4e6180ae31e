"""Sign-in throttle maths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.config.staff.throttle import Limit, longest_wait, recent, retry_after

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
FIVE = Limit(5, timedelta(minutes=15))

offsets = st.lists(st.integers(min_value=0, max_value=3600), max_size=30)
limits = st.builds(
    Limit,
    st.integers(min_value=1, max_value=10),
    st.integers(min_value=1, max_value=3600).map(lambda s: timedelta(seconds=s)),
)


def test_under_the_limit_goes_ahead() -> None:
    failures = [NOW - timedelta(minutes=m) for m in (1, 2, 3, 4)]
    assert retry_after(failures, NOW, FIVE) is None


def test_at_the_limit_waits_until_the_oldest_leaves_the_window() -> None:
    failures = [NOW - timedelta(minutes=m) for m in (1, 2, 3, 4, 10)]
    assert retry_after(failures, NOW, FIVE) == timedelta(minutes=5)


def test_failures_outside_the_window_do_not_count() -> None:
    failures = [NOW - timedelta(minutes=20)] * 10 + [NOW - timedelta(minutes=1)]
    assert retry_after(failures, NOW, FIVE) is None


def test_a_limit_needs_a_positive_count_and_window() -> None:
    with pytest.raises(ValueError, match="positive window"):
        Limit(0, timedelta(minutes=1))
    with pytest.raises(ValueError, match="positive window"):
        Limit(1, timedelta(0))


def test_longest_wait_binds() -> None:
    assert longest_wait([None, timedelta(seconds=3), timedelta(seconds=9)]) == timedelta(seconds=9)
    assert longest_wait([None, None]) is None


# No deadline: a busy 2-core machine stalls examples for reasons of its own.
@settings(deadline=None)
@given(offsets, limits)
def test_waiting_the_answer_is_exactly_enough(seconds: list[int], limit: Limit) -> None:
    failures = [NOW - timedelta(seconds=s) for s in seconds]
    wait = retry_after(failures, NOW, limit)
    inside = recent(failures, NOW, limit)
    if wait is None:
        assert len(inside) < limit.failures
        return
    assert timedelta(0) < wait <= limit.window
    # After waiting, one more attempt is allowed; a moment earlier it was not.
    assert retry_after(failures, NOW + wait, limit) is None
    assert retry_after(failures, NOW + wait - timedelta(microseconds=1), limit) is not None


# No deadline: a busy 2-core machine stalls examples for reasons of its own.
@settings(deadline=None)
@given(offsets, limits, st.integers(min_value=0, max_value=3600))
def test_one_more_failure_never_shortens_the_wait(
    seconds: list[int], limit: Limit, extra: int
) -> None:
    failures = [NOW - timedelta(seconds=s) for s in seconds]
    before = retry_after(failures, NOW, limit) or timedelta(0)
    after = retry_after([*failures, NOW - timedelta(seconds=extra)], NOW, limit) or timedelta(0)
    assert after >= before
