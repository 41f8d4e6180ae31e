from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.throttle import (
    RollingCap,
    backoff_delay,
    max_in_any_window,
    reserve,
)

T0 = datetime(2025, 6, 2, 9, tzinfo=UTC)
SEC = timedelta(seconds=1)


def test_reserve_spaces_sends_one_interval_apart() -> None:
    r = reserve(None, T0, 3, 20 * SEC)
    assert r.slots == (T0, T0 + 20 * SEC, T0 + 40 * SEC)
    assert r.new_tat == T0 + 60 * SEC


def test_reserve_allows_a_burst_then_steady_rate() -> None:
    r = reserve(None, T0, 5, SEC, burst=3)
    assert r.slots == (T0, T0, T0, T0 + SEC, T0 + 2 * SEC)
    assert r.new_tat == T0 + 5 * SEC


def test_reserve_continues_from_a_future_tat() -> None:
    first = reserve(None, T0, 2, 10 * SEC)
    later = reserve(first.new_tat, T0 + SEC, 2, 10 * SEC)
    assert later.slots == (T0 + 20 * SEC, T0 + 30 * SEC)
    # An old TAT gives no extra credit: the limiter restarts at now.
    idle = reserve(T0, T0 + 3600 * SEC, 2, 10 * SEC)
    assert idle.slots == (T0 + 3600 * SEC, T0 + 3610 * SEC)


def test_reserve_validation() -> None:
    with pytest.raises(ValueError, match="interval"):
        reserve(None, T0, 1, timedelta(0))
    with pytest.raises(ValueError, match="burst"):
        reserve(None, T0, 1, SEC, burst=0)
    assert reserve(None, T0, 0, SEC).slots == ()
    assert reserve(None, T0, 0, SEC).new_tat == T0


@given(
    st.lists(st.tuples(st.integers(0, 500), st.integers(0, 6)), min_size=1, max_size=30),
    st.integers(1, 60),
    st.integers(1, 5),
    st.integers(1, 400),
)
def test_gcra_guarantee_holds_in_every_window(
    requests: list[tuple[int, int]], interval_s: int, burst: int, window_s: int
) -> None:
    # Requests arrive at increasing "now"s; each reserves some sends against the shared TAT.
    interval = interval_s * SEC
    tat = None
    sent: list[datetime] = []
    now = T0
    for gap, count in requests:
        now += gap * SEC
        reservation = reserve(tat, now, count, interval, burst)
        assert all(slot >= now for slot in reservation.slots)
        assert list(reservation.slots) == sorted(reservation.slots)
        sent.extend(reservation.slots)
        tat = reservation.new_tat
    window = window_s * SEC
    assert max_in_any_window(sent, window) <= window // interval + burst


def test_max_in_any_window() -> None:
    instants = [T0, T0 + SEC, T0 + 2 * SEC, T0 + 10 * SEC]
    assert max_in_any_window(instants, 2 * SEC) == 2  # half-open: [t, t + 2 s)
    assert max_in_any_window(instants, 3 * SEC) == 3
    assert max_in_any_window([], SEC) == 0
    assert max_in_any_window([T0, T0, T0], SEC) == 3


@given(st.lists(st.integers(0, 100), max_size=40), st.integers(1, 30))
def test_max_in_any_window_matches_brute_force(offsets: list[int], window_s: int) -> None:
    instants = [T0 + o * SEC for o in offsets]
    window = window_s * SEC
    expected = max((sum(1 for u in instants if t <= u < t + window) for t in instants), default=0)
    assert max_in_any_window(instants, window) == expected


def test_rolling_cap() -> None:
    cap = RollingCap(limit=3, period=timedelta(hours=24))
    past = [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    now = T0 + timedelta(hours=5)
    assert cap.used(past, now) == 3
    assert cap.available(past, now) == 0
    assert cap.next_free(past, now) == T0 + timedelta(hours=24)
    # At exactly 24 h the first send frees its place.
    assert cap.available(past, T0 + timedelta(hours=24)) == 1
    assert cap.available(past, T0 + timedelta(hours=24) - SEC) == 0
    assert cap.plan(past, now, 2) == (T0 + timedelta(hours=24), T0 + timedelta(hours=25))


@given(
    st.lists(st.integers(0, 300), max_size=20).map(sorted),
    st.integers(1, 5),
    st.integers(1, 100),
    st.integers(0, 400),
    st.integers(0, 8),
)
def test_rolling_cap_plan_keeps_the_cap(
    past_offsets: list[int], limit: int, period_s: int, now_offset: int, count: int
) -> None:
    cap = RollingCap(limit, period_s * SEC)
    now = T0 + now_offset * SEC
    past = [T0 + o * SEC for o in past_offsets if o <= now_offset]
    plan = cap.plan(past, now, count)
    assert len(plan) == count
    if plan:
        assert plan[0] == cap.next_free(past, now)
    history = sorted(past + list(plan))
    # Counted at each planned send (inclusive), the cap is never exceeded.
    for slot in plan:
        assert cap.used(history, slot) <= limit
    # And each planned send is the earliest possible: one second earlier would break the cap.
    for index, slot in enumerate(plan):
        if slot > now:
            earlier = sorted([*past, *plan[:index], slot - SEC])
            assert cap.used(earlier, slot - SEC) > limit


def test_backoff_delay() -> None:
    assert backoff_delay(1, 2.0, 60.0, None, 0.0, 0.0) == 2.0
    assert backoff_delay(3, 2.0, 60.0, None, 0.0, 0.0) == 8.0
    assert backoff_delay(10, 2.0, 60.0, None, 0.0, 0.0) == 60.0
    assert backoff_delay(10_000, 2.0, 60.0, None, 0.0, 0.0) == 60.0  # no float overflow
    assert backoff_delay(3, 2.0, 60.0, None, 0.5, 0.5) == 6.0  # 8 shortened by a quarter
    assert backoff_delay(1, 2.0, 60.0, 30.0, 0.2, 0.9) == 30.0  # Retry-After is a floor
    assert backoff_delay(1, 2.0, 60.0, 120.0, 0.0, 0.0) == 120.0  # even above the cap
    with pytest.raises(ValueError, match="rand"):
        backoff_delay(1, 2.0, 60.0, None, 0.1, 1.0)
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(0, 2.0, 60.0, None, 0.1, 0.5)


@given(
    st.integers(1, 80),
    st.floats(0.1, 10),
    st.floats(10, 1000),
    st.one_of(st.none(), st.floats(0, 2000)),
    st.floats(0, 1),
    st.floats(0, 1, exclude_max=True),
)
def test_backoff_delay_bounds(
    attempt: int, base: float, cap: float, retry_after: float | None, jitter: float, rand: float
) -> None:
    delay = backoff_delay(attempt, base, cap, retry_after, jitter, rand)
    ceiling = min(cap, base * 2 ** (attempt - 1))
    assert delay >= ceiling * (1 - jitter) - 1e-9 or (
        retry_after is not None and delay == retry_after
    )
    assert delay <= max(ceiling, retry_after or 0) + 1e-9
    if retry_after is not None:
        assert delay >= retry_after
