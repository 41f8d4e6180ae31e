"""The hold/resume state machine: the one owner of when an account stops and starts again."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.sms_gateway.domain.credit_hold import (
    SMALLEST_MONEY,
    BalanceLearnt,
    HoldState,
    Refused,
    may_poll,
    needed,
    smallest_payment,
    step,
)

balances = st.floats(min_value=0, max_value=1e6, allow_nan=False)
payments = st.floats(min_value=SMALLEST_MONEY, max_value=100, allow_nan=False)
refusals = st.builds(
    Refused,
    kind=st.sampled_from(["no_credit", "bad_credentials", "destination_refused"]),
    detail=st.text(max_size=20),
    balance=st.none() | balances,
    required=st.none() | balances,
)
held_states = st.builds(
    HoldState, held=st.just(True), reason=st.text(max_size=10), required=st.none() | balances
)
states = held_states | st.just(HoldState())


def test_running_out_of_credit_holds_with_what_the_message_needed() -> None:
    decided = step(HoldState(), Refused("no_credit", balance=0.5, required=2.0))
    assert decided.action == "hold"
    assert decided.state == HoldState(
        True, "no credits left (balance 0.5, this message needs 2)", 2
    )
    assert decided.balance == 0.5


def test_refused_credentials_hold_without_a_balance() -> None:
    decided = step(HoldState(), Refused("bad_credentials", "401", balance=3.0))
    assert decided.action == "hold"
    assert decided.state.reason == "the provider refused the account's credentials (401)"
    assert decided.state.required is None and decided.balance is None


def test_a_refused_destination_holds_with_its_reason() -> None:
    decided = step(HoldState(), Refused("destination_refused", "10.0.0.1 is not allowed"))
    assert (decided.action, decided.state.reason) == ("hold", "10.0.0.1 is not allowed")


def test_a_balance_below_one_segment_holds_a_sending_account() -> None:
    decided = step(HoldState(), BalanceLearnt(0.5, smallest_payment=1.0))
    assert decided.action == "hold"
    assert decided.state == HoldState(True, "no credits left", None)


def test_a_stale_balance_never_holds() -> None:
    decided = step(HoldState(), BalanceLearnt(0.0, smallest_payment=1.0, current=False))
    assert decided.action is None and not decided.state.held


def test_a_held_account_resumes_once_the_refused_message_is_covered() -> None:
    held = HoldState(True, "no credits left", required=3.0)
    assert step(held, BalanceLearnt(2.0, smallest_payment=1.0)).action is None
    resumed = step(held, BalanceLearnt(3.0, smallest_payment=1.0))
    assert resumed.action == "resume" and resumed.state == HoldState()


def test_smallest_payment_is_a_segment_for_credits_and_anything_for_money() -> None:
    assert smallest_payment("credits", 2) == 2.0
    assert smallest_payment("credits", 0) == SMALLEST_MONEY
    assert smallest_payment("money", 5) == SMALLEST_MONEY


def test_polls_are_spaced() -> None:
    assert may_poll(None, 0.0, 2.0)
    assert not may_poll(10.0, 11.0, 2.0)
    assert may_poll(10.0, 12.0, 2.0)


@given(states, refusals)
def test_every_refusal_holds_whatever_the_state(state: HoldState, refused: Refused) -> None:
    decided = step(state, refused)
    assert decided.action == "hold" and decided.state.held and decided.state.reason


@given(held_states, balances, payments, st.booleans())
def test_a_held_account_never_holds_again_and_resumes_exactly_when_covered(
    state: HoldState, balance: float, payment: float, current: bool
) -> None:
    decided = step(state, BalanceLearnt(balance, payment, current))
    assert decided.action != "hold"
    covered = balance >= max(state.required or 0.0, payment)
    assert (decided.action == "resume") == covered
    assert decided.state.held == (not covered)
    if not covered:
        assert decided.state == state  # what the refused message needed is kept


@given(balances, payments, st.booleans())
def test_a_sending_account_is_held_only_by_a_current_balance_below_one_segment(
    balance: float, payment: float, current: bool
) -> None:
    decided = step(HoldState(), BalanceLearnt(balance, payment, current))
    assert decided.action != "resume"
    assert (decided.action == "hold") == (current and balance < payment)


@given(
    st.lists(refusals | st.builds(BalanceLearnt, balances, payments, st.booleans()), max_size=30)
)
def test_actions_follow_the_state_and_only_a_held_account_resumes(events: list[object]) -> None:
    state = HoldState()
    for event in events:
        decided = step(state, event)  # type: ignore[arg-type]
        if decided.action == "resume":
            assert state.held and not decided.state.held
        if decided.action == "hold":
            assert decided.state.held
        if decided.action is None:
            assert decided.state == state
        state = decided.state


@given(held_states, payments)
def test_needed_is_at_least_one_segment(state: HoldState, payment: float) -> None:
    assert needed(state, payment) >= payment
