"""How many messages the credits left pay for: pure arithmetic for the forecast and submission.

Messages go in order, so what fits is the longest prefix whose cost (after what is already
queued ahead of them) stays within the balance. Submission only warns with this; it never
refuses, because a top-up may arrive before the messages' turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.domain.numbers import for_people

EPSILON = 1e-9  # costs are sums of decimal fractions (0.05 credits a part)


@dataclass(frozen=True)
class CreditFit:
    """What the balance covers."""

    balance: float
    needed: float
    ahead: float
    fit: int
    total: int
    unit: str

    @property
    def short(self) -> bool:
        """Some messages cannot be paid for with the credits left."""
        return self.fit < self.total

    @property
    def summary(self) -> str:
        """ "750 of 1,000 can be sent with the credits left"."""
        fit, total = for_people(self.fit), for_people(self.total)
        return f"{fit} of {total} can be sent with the {self.unit} left"

    def as_json(self) -> dict[str, object]:
        """JSON-ready form, with a warning when the credits run out first."""
        return {
            "balance": self.balance,
            "unit": self.unit,
            "needed": round(self.needed, 4),
            "queued_ahead": round(self.ahead, 4),
            "fit": self.fit,
            "total": self.total,
            "summary": self.summary,
            "warning": (
                f"{self.summary}: top up before they are due, or the rest are held"
                if self.short
                else None
            ),
        }


def credit_fit(
    costs: Sequence[float], balance: float, *, ahead: float = 0.0, unit: str = "credits"
) -> CreditFit:
    """How many of the messages costing `costs` (in sending order) the balance pays for after
    `ahead` (the cost of what is queued before them)."""
    left = balance - ahead
    fit = 0
    for cost in costs:
        if cost > left + EPSILON:
            break
        left -= cost
        fit += 1
    return CreditFit(
        balance=balance, needed=float(sum(costs)), ahead=ahead, fit=fit, total=len(costs), unit=unit
    )


def uniform_fit(
    count: int, per_message: float, balance: float, *, ahead: float = 0.0, unit: str = "credits"
) -> CreditFit:
    """`credit_fit` for `count` messages of one cost each (the forecast's one-part SMS)."""
    if per_message <= 0:
        return CreditFit(balance, 0.0, ahead, count, count, unit)
    left = balance - ahead
    fit = max(0, min(count, int((left + EPSILON) // per_message)))
    return CreditFit(balance, count * per_message, ahead, fit, count, unit)
