"""Hard or soft: the status class decides, else the RFC 3464 action."""

from __future__ import annotations

import pytest

from services.email_gateway.domain.bounces import reaches_threshold, severity


@pytest.mark.parametrize(
    ("action", "status", "expected"),
    [
        ("failed", "5.1.1", "hard"),
        ("failed", "4.4.7", "soft"),  # gave up after retrying a temporary failure
        ("delayed", "4.2.2", "soft"),
        ("delayed", "5.0.0", "hard"),  # a permanent code wins over the verb
        ("failed", None, "hard"),
        ("delayed", None, "soft"),
        ("Failed", " 5.7.1 ", "hard"),
        ("delivered", "2.0.0", None),
        ("relayed", None, None),
        ("expanded", "2.0.0", None),
        ("unknown", None, None),
        (None, "2.0.0", None),
    ],
)
def test_severity(action: str | None, status: str | None, expected: str | None) -> None:
    assert severity(action, status) == expected


def test_threshold() -> None:
    assert not reaches_threshold(2, 3)
    assert reaches_threshold(3, 3) and reaches_threshold(4, 3)
    assert not reaches_threshold(50, 0), "0 only counts"
