"""What a provider's answer to one send means for the message (pure rules).

The answer is certain (accepted, refused, rate limited, unavailable, not sent), says the
account cannot send at all (no credit, refused credentials or destination: held), or is
*ambiguous* (no answer: the provider may have it). An ambiguous send is looked up before
anything else and never re-sent blindly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from services.sms_gateway.domain.credit_hold import RefusalKind, Refused, refusal_reason

Status = Literal[
    "accepted",
    "rate_limited",
    "unavailable",
    "not_sent",
    "ambiguous",
    "refused",
    "no_credit",
    "bad_credentials",
    "opted_out",
    "destination_refused",
]
MessageState = Literal["sent", "look_up", "retry", "hold", "failed", "opted_out"]
HOLDING: tuple[RefusalKind, ...] = ("no_credit", "bad_credentials", "destination_refused")


@dataclass(frozen=True)
class Outcome:
    """Where the message goes next, and why."""

    state: MessageState
    reason: str = ""
    retry_after: float | None = None
    refused: Refused | None = None
    """For `hold`: the refusal the credit state machine decides on."""
    detail: str = ""
    """The provider's own words, kept with a refused message."""


def outcome(
    status: Status,
    detail: str = "",
    *,
    balance: float | None = None,
    required: float | None = None,
    retry_after: float | None = None,
) -> Outcome:
    """The message state a provider answer leads to."""
    if status == "accepted":
        return Outcome("sent")
    if status == "ambiguous":
        return Outcome("look_up", detail)
    if status in ("rate_limited", "unavailable", "not_sent"):
        return Outcome("retry", detail, retry_after=retry_after)
    if status in HOLDING:
        refused = Refused(status, detail, balance, required)
        return Outcome("hold", refusal_reason(refused), refused=refused)
    if status == "opted_out":
        reason = f"the provider blocks this recipient (they opted out): {detail}"
        return Outcome("opted_out", reason, detail=detail)
    return Outcome("failed", detail, detail=detail)


def not_found_after_ambiguous(detail: str) -> str:
    """Why an ambiguous send the provider does not have (yet) is retried through a lookup."""
    return f"{detail}; not found at the provider yet, so it is looked up again before any resend"


def cannot_tell_yet() -> str:
    """Why a message attempted before waits: the provider cannot tell yet if it has it."""
    return (
        "an earlier attempt may have reached the provider, which cannot tell yet (its reports "
        "lag); not sent again until it can"
    )


def unsettled_elsewhere(why: str) -> str:
    """Why a message attempted before waits: the site's other account may have it."""
    return (
        "an earlier attempt may have gone through the site's other provider account, which "
        f"could not be asked ({why}); not sent here until that is settled"
    )


ALREADY_THERE = "the provider already had it (found by reference); not sent again"
