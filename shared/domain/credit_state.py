"""When a provider account is "low" on credit, and when to ask for a top-up (pure rules).

Every balance the gateway learns (the answer to a send, a balance poll, a top-up) is an
`Observation`: the provider computed it at some instant between when the request left
(`began`) and when its answer was back (`answered`). Answers of concurrent requests arrive in
any order, and several replicas learn balances of the same account, so the order in which
observations reach `observe` says nothing about the order in which the provider computed them.
What does: an observation whose request began after another one's answer was back is certainly
newer than it. Of two that overlap, either may be the newer one.

So the state remembers when the answer that last moved the account in or out of "low" arrived
(`as_of`), and an observation whose request began before that instant may predate the change
and is not allowed to move the account again (it is ignored, not guessed at). An observation
that does move it was, in the provider's own order, taken after the one that last did: every
"low" therefore stands for a crossing of the threshold that really happened (the balance was at
or above it, then below), and each crossing gets at most one `low` and one top-up request
(`topup_crossing`), whatever the order of arrival. Sends only lower a balance and top-ups only
raise it, so nothing is lost by ignoring: a later observation shows the same side.

The instants are wall-clock seconds since the epoch, compared across replicas: the replicas'
clocks must agree to well within a provider round trip (NTP does). A larger skew can at worst
let one stale observation through (one extra `low`); it never loses or repeats a message.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class CreditState:
    """One account's credit state, shared by the replicas (a database row)."""

    low: bool = False
    crossing: int = 0
    """How many times the account went below the threshold."""
    topup_crossing: int = 0
    """The crossing an automatic top-up was requested for (0: none yet)."""
    as_of: float | None = None
    """When the answer that last changed `low` arrived (None: never changed)."""


@dataclass(frozen=True)
class Observation:
    """A balance and the interval in which the provider computed it."""

    balance: float
    began: float
    answered: float

    def __post_init__(self) -> None:
        if self.answered < self.began:
            raise ValueError("an observation's answer cannot arrive before its request began")


@dataclass(frozen=True)
class CreditRules:
    """The site's terms for the account."""

    threshold: float
    """Below this the account is low (0: never)."""
    auto_topup: bool
    """The site sets an automatic top-up amount and the provider can top up."""
    smallest_payment: float
    """The least balance that pays for one segment; below it the account is held."""


@dataclass(frozen=True)
class Decision:
    """What one observation does: the new state and the actions that go with it."""

    state: CreditState
    applied: bool
    """False: the observation may be older than the state, and changed nothing."""
    emit_low: bool = False
    request_topup: bool = False
    hold: bool = False


def is_current(state: CreditState, observation: Observation) -> bool:
    """Whether the observation was certainly taken after the state's last change."""
    return state.as_of is None or observation.began >= state.as_of


def observe(state: CreditState, observation: Observation, rules: CreditRules) -> Decision:
    """The state after `observation`, and whether to emit `low`, request a top-up, hold."""
    if not is_current(state, observation):
        return Decision(state, applied=False)
    below = observation.balance < rules.threshold
    new = state
    if below and not state.low:
        new = dataclasses.replace(
            state, low=True, crossing=state.crossing + 1, as_of=observation.answered
        )
    elif state.low and not below:
        new = dataclasses.replace(state, low=False, as_of=observation.answered)
    # Asked for here rather than only at the crossing: a site that turns automatic top-ups on
    # while its account is already low gets one for the crossing in progress.
    topup = new.low and rules.auto_topup and new.topup_crossing < new.crossing
    if topup:
        new = dataclasses.replace(new, topup_crossing=new.crossing)
    return Decision(
        new,
        applied=True,
        emit_low=new.crossing > state.crossing,
        request_topup=topup,
        hold=observation.balance < rules.smallest_payment,
    )
