"""What the credits left pay for."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.domain.credit_fit import credit_fit, uniform_fit


def test_the_issue_run_750_of_1000() -> None:
    got = uniform_fit(1000, 1.0, 750.0)
    assert (got.fit, got.short) == (750, True)
    assert got.summary == "750 of 1,000 can be sent with the credits left"
    assert got.as_json()["warning"].startswith("750 of 1,000 can be sent")


def test_enough_credits_no_warning_and_queued_messages_pay_first() -> None:
    assert uniform_fit(10, 1.0, 50.0).as_json()["warning"] is None
    assert uniform_fit(10, 1.0, 50.0, ahead=45.0).fit == 5
    assert uniform_fit(10, 1.0, 5.0, ahead=45.0).fit == 0


def test_messages_go_in_order_so_a_long_one_stops_the_run() -> None:
    assert credit_fit([1, 1, 3, 1], 4.0).fit == 2


def test_decimal_parts_add_up_exactly_enough() -> None:
    assert uniform_fit(20, 0.05, 1.0).fit == 20
    assert credit_fit([0.1] * 10, 1.0).fit == 10


costs = st.lists(st.integers(0, 5).map(float), max_size=200)


@given(costs, st.integers(0, 400).map(float), st.integers(0, 100).map(float))
def test_what_fits_is_paid_for_and_one_more_is_not(
    spent: list[float], balance: float, ahead: float
) -> None:
    got = credit_fit(spent, balance, ahead=ahead)
    assert 0 <= got.fit <= len(spent)
    assert sum(spent[: got.fit]) <= max(balance - ahead, 0) or got.fit == 0
    if got.fit < len(spent):
        assert sum(spent[: got.fit + 1]) > balance - ahead


@given(st.integers(0, 5000), st.sampled_from([0.05, 0.5, 1.0, 2.0]), st.integers(0, 3000))
def test_uniform_agrees_with_the_general_rule(count: int, per: float, balance: int) -> None:
    assert uniform_fit(count, per, float(balance)).fit == credit_fit([per] * count, balance).fit
