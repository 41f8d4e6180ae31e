"""The credit-state policy: one `low` and at most one top-up per crossing of the threshold,
whatever the order in which balances arrive."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.credit_state import (
    CreditRules,
    CreditState,
    Decision,
    Observation,
    is_current,
    observe,
)

RULES = CreditRules(threshold=5, auto_topup=False, smallest_payment=1)
TOPUP = CreditRules(threshold=5, auto_topup=True, smallest_payment=1)


def run(
    observations: list[Observation], rules: CreditRules = RULES, state: CreditState | None = None
) -> tuple[CreditState, list[Decision]]:
    state = state or CreditState()
    decisions = []
    for o in observations:
        decision = observe(state, o, rules)
        decisions.append(decision)
        state = decision.state
    return state, decisions


def lows(decisions: list[Decision]) -> int:
    return sum(d.emit_low for d in decisions)


def topups(decisions: list[Decision]) -> int:
    return sum(d.request_topup for d in decisions)


def test_going_below_the_threshold_is_one_low_and_staying_below_is_no_more() -> None:
    state, decisions = run([Observation(b, t, t + 0.5) for t, b in enumerate([7, 6, 5, 4, 3, 2])])
    assert [d.emit_low for d in decisions] == [False, False, False, True, False, False]
    assert state.low and state.crossing == 1 and state.as_of == 3.5


def test_requests_that_left_in_another_order_than_the_provider_took_them() -> None:
    # A failing run on a busy machine (threshold 5): the provider debited 9, 8, 7 … 0 in that
    # order, but the requests for 6, 5 and 4 had left before those for 8 and 7 (the send
    # process's POSTs overtook one another). Ordering by when requests left dropped the 6, 5
    # and 4 and took later ones at face value; the policy orders by "left after the answer
    # that last changed the state was back" only.
    began = {9: 0.601, 6: 0.624, 5: 0.645, 4: 0.668, 8: 0.691, 7: 0.742, 3: 0.743, 2: 0.765}
    began |= {1: 0.785, 0: 0.808}
    # When the provider took each (after its request left), answered 10 ms later.
    taken = {9: 0.61, 8: 0.70, 7: 0.75, 6: 0.755, 5: 0.76, 4: 0.765, 3: 0.77, 2: 0.775}
    taken |= {1: 0.79, 0: 0.81}
    assert all(began[b] <= taken[b] for b in taken)
    arrivals = [Observation(b, began[b], taken[b] + 0.01) for b in range(9, -1, -1)]
    state, decisions = run(arrivals)
    assert lows(decisions) == 1 and state.low and state.crossing == 1
    assert decisions[5].emit_low, "the 4 is the crossing"
    assert [d.applied for d in decisions[6:]] == [False, False, True, True]
    assert decisions[-1].hold


def test_an_older_balance_arriving_after_a_newer_one_is_ignored() -> None:
    newer = Observation(4, began=1.0, answered=1.2)
    older = Observation(5, began=0.9, answered=1.3)  # left before the 4 came back
    after = Observation(3, began=1.4, answered=1.5)
    state, decisions = run([newer, older, after])
    assert [d.emit_low for d in decisions] == [True, False, False]
    assert not decisions[1].applied and decisions[2].applied
    assert state.low and state.crossing == 1


def test_a_balance_from_before_the_top_up_neither_lows_again_nor_asks_for_another() -> None:
    crossing = Observation(4, 1.0, 1.1)
    state, decisions = run([crossing], TOPUP)
    assert decisions[0].emit_low and decisions[0].request_topup
    assert state.topup_crossing == 1
    # The top-up's own answer: back above the threshold.
    state, decisions = run([Observation(104, 1.2, 1.4)], TOPUP, state)
    assert not state.low and decisions[0].applied
    # A send in flight during the top-up answers with the balance of before it.
    state, decisions = run([Observation(3, 1.05, 1.5)], TOPUP, state)
    assert not decisions[0].applied and lows(decisions) == 0 and topups(decisions) == 0
    assert not state.low


def test_a_top_up_too_small_to_leave_low_is_not_asked_for_again() -> None:
    state, decisions = run(
        [Observation(4, 1.0, 1.1), Observation(4.5, 1.2, 1.3), Observation(3.5, 1.4, 1.5)],
        TOPUP,
    )
    assert topups(decisions) == 1 and lows(decisions) == 1
    assert state.low and state.crossing == state.topup_crossing == 1


def test_a_real_recovery_then_a_new_crossing_is_a_second_low_and_top_up() -> None:
    state, decisions = run(
        [Observation(4, 1.0, 1.1), Observation(104, 1.2, 1.3), Observation(4, 9.0, 9.1)],
        TOPUP,
    )
    assert lows(decisions) == 2 and topups(decisions) == 2
    assert state.crossing == state.topup_crossing == 2


def test_automatic_top_ups_turned_on_while_low_top_up_the_crossing_in_progress() -> None:
    state, decisions = run([Observation(4, 1.0, 1.1)], RULES)
    assert topups(decisions) == 0
    state, decisions = run([Observation(3, 1.2, 1.3), Observation(2, 1.4, 1.5)], TOPUP, state)
    assert [d.request_topup for d in decisions] == [True, False]
    assert not any(d.emit_low for d in decisions)


def test_hold_only_from_a_current_balance_that_cannot_pay() -> None:
    state, decisions = run([Observation(4, 1.0, 1.1), Observation(0, 0.95, 1.2)])
    assert not decisions[1].applied and not decisions[1].hold
    _, decisions = run([Observation(0, 1.3, 1.4)], RULES, state)
    assert decisions[0].hold


def test_threshold_zero_never_lows() -> None:
    rules = CreditRules(threshold=0, auto_topup=True, smallest_payment=1)
    _, decisions = run([Observation(0, 1.0, 1.1)], rules)
    assert lows(decisions) == 0 and topups(decisions) == 0 and decisions[0].hold


def test_an_answer_before_its_request_is_refused() -> None:
    with pytest.raises(ValueError, match="answer"):
        Observation(3, began=2.0, answered=1.0)


def test_current_means_begun_after_the_last_change() -> None:
    assert is_current(CreditState(), Observation(1, 0, 0))
    state = CreditState(low=True, crossing=1, as_of=5.0)
    assert is_current(state, Observation(1, 5.0, 6.0))
    assert not is_current(state, Observation(1, 4.99, 6.0))


# --- properties: any history, any delays, any order of arrival --------------------------------


@dataclass(frozen=True)
class Taken:
    """An observation and the instant the provider really took it."""

    at: float
    observation: Observation


@st.composite
def histories(draw: st.DrawFn) -> tuple[float, list[Taken]]:
    """A provider's true history (sends lower the balance, top-ups raise it), each balance
    observed over a random interval around the instant it was taken."""
    threshold = draw(st.integers(0, 30))
    balance = draw(st.integers(0, 60))
    taken: list[Taken] = []
    operations = draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("send"), st.integers(1, 5)),
                st.tuples(st.just("topup"), st.integers(1, 40)),
            ),
            min_size=1,
            max_size=30,
        )
    )
    for i, (kind, amount) in enumerate(operations):
        if kind == "send":
            if amount > balance:
                continue  # refused: nothing debited, no balance answered
            balance -= amount
        else:
            balance += amount
        at = float(i)
        before = draw(st.floats(0, 6))
        after = draw(st.floats(0.001, 6))
        taken.append(Taken(at, Observation(balance, at - before, at + after)))
    return float(threshold), taken


def crossings(balances: list[float], threshold: float) -> int:
    """Downward crossings of the threshold, from a start that is not low."""
    count, low = 0, False
    for b in balances:
        if b < threshold and not low:
            count += 1
        low = b < threshold
    return count


@settings(max_examples=400)
@given(history=histories(), data=st.data())
def test_any_arrival_order_gives_at_most_one_low_and_top_up_per_real_crossing(
    history: tuple[float, list[Taken]], data: st.DataObject
) -> None:
    threshold, taken = history
    arrivals = data.draw(st.permutations(taken))
    rules = CreditRules(threshold=threshold, auto_topup=True, smallest_payment=1)
    state = CreditState()
    last_change: float | None = None
    topped_up: list[int] = []
    emitted = 0
    for t in arrivals:
        decision = observe(state, t.observation, rules)
        if decision.state.low != state.low:
            # Every move in or out of low is, in the provider's order, after the previous one.
            assert last_change is None or t.at > last_change
            last_change = t.at
            assert (t.observation.balance < threshold) == decision.state.low
        if decision.emit_low:
            emitted += 1
            assert decision.state.crossing == emitted
        if decision.request_topup:
            topped_up.append(decision.state.crossing)
        state = decision.state
    true_order = [t.observation.balance for t in taken]
    assert emitted <= crossings(true_order, threshold)
    assert topped_up == sorted(set(topped_up)), "one top-up per crossing"
    assert len(topped_up) <= emitted
    if any(b < threshold for b in true_order):
        assert emitted >= 1, "a balance below the threshold was seen and no low fired"


@settings(max_examples=200)
@given(history=histories())
def test_in_order_answers_give_exactly_the_real_crossings(
    history: tuple[float, list[Taken]],
) -> None:
    threshold, taken = history
    # One request at a time: each leaves after the previous answer is back.
    sequential = [Observation(t.observation.balance, t.at, t.at + 0.5) for t in taken]
    state, decisions = run(sequential, CreditRules(threshold, True, 1))
    balances = [o.balance for o in sequential]
    assert lows(decisions) == crossings(balances, threshold)
    assert topups(decisions) == lows(decisions)
    assert state.low == (balances[-1] < threshold if balances else False)
