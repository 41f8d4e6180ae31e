"""When a provider account is held and when it resumes: the one owner of that decision.

An account is held when it cannot pay for another segment (a balance below the smallest
payment, or the provider refusing a send for lack of credit), or when the provider refuses it
outright (credentials, a refused destination): its messages stay queued. While held, a balance
that covers what the refused message needed (and at least one segment) resumes it. Everything
else (the SQL row, the engine's limiter, the events) only carries out what `step` decides.

Pure: no I/O, no clock; the caller passes what it knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SMALLEST_MONEY = 1e-9
"""Money accounts pay per message in fractions: anything above zero pays for one."""

RefusalKind = Literal["no_credit", "bad_credentials", "destination_refused", "unreachable"]
"""`unreachable`: an outage longer than the site's `failover_after_seconds`, held only where a
secondary account can take over (`domain.failover`); its `detail` is the whole reason."""


@dataclass(frozen=True)
class HoldState:
    """What the gateway knows of an account's hold."""

    held: bool = False
    reason: str | None = None
    required: float | None = None
    """What the refused message needed (None: unknown, one segment is enough)."""


@dataclass(frozen=True)
class Refused:
    """The provider refused a send in a way no retry can fix by itself."""

    kind: RefusalKind
    detail: str = ""
    balance: float | None = None
    required: float | None = None


@dataclass(frozen=True)
class BalanceLearnt:
    """A balance learnt from the provider (a send's answer, a poll, a top-up).

    `current`: it was certainly taken after the account's last credit change (see
    `shared.domain.credit_state`); a possibly stale balance never holds an account.
    """

    balance: float
    smallest_payment: float
    current: bool = True


Event = Refused | BalanceLearnt


@dataclass(frozen=True)
class Step:
    """The state after one event and what to carry out: hold, resume, or nothing."""

    state: HoldState
    action: Literal["hold", "resume"] | None = None
    balance: float | None = None
    """The balance the decision was taken with (None: unknown)."""


def smallest_payment(unit: str, credits_per_segment: float) -> float:
    """The least balance that pays for one segment (credits: the site's price of one)."""
    if unit == "credits":
        return max(float(credits_per_segment), SMALLEST_MONEY)
    return SMALLEST_MONEY


def refusal_reason(refused: Refused) -> str:
    """Why the account is held, for the queue, the event and the operator."""
    if refused.kind == "no_credit":
        reason = "no credits left"
        if refused.balance is not None and refused.required is not None:
            reason += f" (balance {refused.balance:g}, this message needs {refused.required:g})"
        return reason
    if refused.kind == "bad_credentials":
        return f"the provider refused the account's credentials ({refused.detail})"
    if refused.kind == "unreachable":
        return refused.detail or "the provider is unreachable"
    # A configuration error, as refused credentials are: held until the settings change (a
    # new URL is a new account), never retried blindly.
    return refused.detail or "the provider's address may not be connected to"


def needed(state: HoldState, payment: float) -> float:
    """The balance that resumes a held account."""
    return max(state.required or 0.0, payment)


def step(state: HoldState, event: Event) -> Step:
    """Decide one event against the account's hold state."""
    if isinstance(event, Refused):
        # Only a lack of credit says anything about the balance; a refused account's is unknown.
        credit = event.kind == "no_credit"
        held = HoldState(True, refusal_reason(event), event.required if credit else None)
        return Step(held, "hold", event.balance if credit else None)
    if state.held:
        # A held account keeps what the refused message needed until a balance covers it.
        if event.balance >= needed(state, event.smallest_payment):
            return Step(HoldState(), "resume", event.balance)
        return Step(state, None, event.balance)
    if event.current and event.balance < event.smallest_payment:
        return Step(HoldState(True, "no credits left", None), "hold", event.balance)
    return Step(state, None, event.balance)


def may_poll(last_polled: float | None, now: float, period: float) -> bool:
    """Whether a held account's balance may be asked for again (at most every `period`)."""
    return last_polled is None or now - last_polled >= period
