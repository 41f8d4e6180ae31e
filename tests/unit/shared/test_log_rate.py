"""The log rate limiter: one line per key per period, with the count of lines left out."""

from __future__ import annotations

from shared.log_rate import LogRateLimiter


def test_one_line_per_key_per_period_then_the_count_left_out() -> None:
    limiter = LogRateLimiter(period=60)
    assert limiter.admit("bad_signature", 0.0) == 0
    assert [limiter.admit("bad_signature", t) for t in (1.0, 30.0, 59.9)] == [None] * 3
    assert limiter.admit("too_large", 10.0) == 0, "keys are limited separately"
    assert limiter.admit("bad_signature", 60.0) == 3
    assert limiter.admit("bad_signature", 61.0) is None
    assert limiter.admit("bad_signature", 200.0) == 1


def test_memory_stays_bounded_with_many_keys() -> None:
    limiter = LogRateLimiter(period=60, max_keys=3)
    for i in range(10):
        assert limiter.admit(f"k{i}", float(i)) == 0
    assert len(limiter._last) == 3
    assert limiter.admit("k9", 9.5) is None, "the newest keys are still limited"
