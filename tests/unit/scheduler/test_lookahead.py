"""The look-ahead rule: far enough ahead that no tick is stored late at the measured rate."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.scheduler.domain.lookahead import (
    DEFAULT_RATE,
    LookAheadRule,
    PublishRate,
    backlog_seconds,
)

EPSILON = 1e-9

# Instants (seconds) with the ticks due at each, as the timer groups them.
groups = st.lists(
    st.tuples(st.floats(0, 120, allow_nan=False), st.integers(1, 5_000)), min_size=1, max_size=60
).map(lambda items: sorted({t: n for t, n in items}.items()))
rates = st.floats(50, 50_000, allow_nan=False)


def latest_finish_minus_instant(due: list[tuple[float, int]], rate: float, lead: float) -> float:
    """Publish each group from `lead` before its instant, in instant order, one at a time at
    `rate` a second; the worst (stored − instant) over the groups."""
    finished = float("-inf")
    worst = float("-inf")
    for instant, count in due:
        finished = max(finished, instant - lead) + count / rate
        worst = max(worst, finished - instant)
    return worst


def test_a_burst_sharing_one_instant_needs_its_publishing_time() -> None:
    assert backlog_seconds([(60.0, 20_000)], 10_000) == pytest.approx(2.0)


def test_ticks_spread_thinner_than_the_rate_need_no_backlog() -> None:
    # 333 a second, one every 3 ms, against a replica publishing 1,000 a second.
    due = [(i * 0.003, 1) for i in range(20_000)]
    assert backlog_seconds(due, 1_000) == pytest.approx(0.001)


def test_a_dense_stretch_counts_even_after_quiet_ones() -> None:
    # Quiet, then 3,000 ticks within 0.1 s, at 1,000 a second: about 2.9 s behind.
    due = [(0.0, 1), (10.0, 1), *[(20.0 + i / 10_000, 3) for i in range(1_000)]]
    assert backlog_seconds(due, 1_000) == pytest.approx(3.0 - 0.0999, abs=1e-3)


def test_nothing_in_sight_needs_nothing() -> None:
    assert backlog_seconds([], 1_000) == 0.0
    assert LookAheadRule(1.0, 10.0).seconds([], 1_000) == 1.0


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate"):
        backlog_seconds([(0.0, 1)], 0)


@given(groups, rates)
def test_publishing_that_far_ahead_stores_no_tick_late(
    due: list[tuple[float, int]], rate: float
) -> None:
    lead = backlog_seconds(due, rate)
    assert latest_finish_minus_instant(due, rate, lead) <= 1e-6


@given(groups, rates)
def test_any_less_would_store_a_tick_late(due: list[tuple[float, int]], rate: float) -> None:
    lead = backlog_seconds(due, rate)
    shorter = lead - 1e-3
    assert latest_finish_minus_instant(due, rate, shorter) > 1e-4


@given(groups, rates, st.floats(0, 5), st.floats(0, 30))
def test_the_rule_stays_between_floor_and_ceiling(
    due: list[tuple[float, int]], rate: float, floor: float, extra: float
) -> None:
    rule = LookAheadRule(floor, floor + extra)
    seconds = rule.seconds(due, rate)
    assert floor <= seconds <= floor + extra
    if seconds < floor + extra:  # not capped: the backlog twice over, and then no tick late
        assert seconds == pytest.approx(floor + 2 * backlog_seconds(due, rate))
        assert latest_finish_minus_instant(due, rate, seconds) <= EPSILON + 1e-6


def test_a_slower_machine_publishes_further_ahead() -> None:
    due = [(i * 0.01, 50) for i in range(100)]  # 5,000 a second for a second
    rule = LookAheadRule(0.2, 30.0)
    assert rule.seconds(due, 2_000) > rule.seconds(due, 4_000) > rule.seconds(due, 20_000)
    assert rule.seconds(due, 20_000) == pytest.approx(0.2 + 2 * 50 / 20_000)  # one group


def test_floor_above_ceiling_is_refused() -> None:
    with pytest.raises(ValueError, match="floor"):
        LookAheadRule(2.0, 1.0)


def test_rate_before_any_batch_is_the_default() -> None:
    assert PublishRate().per_second == DEFAULT_RATE


def test_rate_weighs_batches_by_their_size() -> None:
    rate = PublishRate()
    rate.observe(10_000, 1.0, at=1.0)  # 10,000 a second
    rate.observe(1, 0.002, at=1.1)  # one tick in a round trip: 500 a second
    assert 9_000 < rate.per_second < 10_000


def test_rate_follows_a_machine_that_slows_down() -> None:
    rate = PublishRate()
    rate.observe(10_000, 1.0, at=0.0)
    for second in range(1, 601):
        rate.observe(1_000, 1.0, at=float(second))
    assert rate.per_second == pytest.approx(1_000, rel=0.01)


def test_empty_batches_teach_nothing() -> None:
    rate = PublishRate()
    rate.observe(0, 5.0, at=0.0)
    assert rate.per_second == DEFAULT_RATE
