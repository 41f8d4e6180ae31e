"""Provider answers → message states, and the rules checked before any provider call."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.sms_gateway.domain import sending
from services.sms_gateway.domain.outcomes import HOLDING, Outcome, Status, outcome

STATUSES: list[Status] = [
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


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("accepted", "sent"),
        ("ambiguous", "look_up"),
        ("rate_limited", "retry"),
        ("unavailable", "retry"),
        ("not_sent", "retry"),
        ("refused", "failed"),
        ("opted_out", "opted_out"),
        ("no_credit", "hold"),
        ("bad_credentials", "hold"),
        ("destination_refused", "hold"),
    ],
)
def test_each_answer_has_one_message_state(status: Status, state: str) -> None:
    assert outcome(status, "why").state == state


def test_a_retry_keeps_the_providers_wait() -> None:
    assert outcome("rate_limited", "429", retry_after=7.0) == Outcome(
        "retry", "429", retry_after=7.0
    )


def test_a_refusal_keeps_the_providers_words() -> None:
    decided = outcome("opted_out", "21610")
    assert decided.reason == "the provider blocks this recipient (they opted out): 21610"
    assert decided.detail == "21610"


@given(
    st.sampled_from(STATUSES),
    st.text(max_size=30),
    st.none() | st.floats(0, 100),
    st.none() | st.floats(0, 100),
)
def test_only_account_refusals_hold_and_they_say_why(
    status: Status, detail: str, balance: float | None, required: float | None
) -> None:
    decided = outcome(status, detail, balance=balance, required=required)
    assert (decided.state == "hold") == (status in HOLDING)
    assert (decided.refused is not None) == (status in HOLDING)
    if decided.refused is not None:
        assert decided.refused.kind == status


NOON = datetime(2026, 6, 1, 12, tzinfo=UTC)


def test_a_number_and_a_body_are_checked_first() -> None:
    assert sending.decide_message("0123", "hi").kind == "fail"
    assert sending.decide_message("+14155550100", "  ").kind == "fail"
    assert sending.decide_message("+14155550100", "hi") == sending.SEND


def test_a_body_over_the_providers_maximum_fails_and_a_missing_sender_waits() -> None:
    assert sending.decide_provider("x" * 11, "twilio", 10, "+1", NOON).kind == "fail"
    waits = sending.decide_provider("x", "twilio", 10, None, NOON)
    assert waits.kind == "defer" and waits.retry_at == NOON + sending.MISCONFIGURED_RETRY


def test_the_sender_is_the_sites_else_the_default_where_allowed() -> None:
    assert sending.sender("Clinic", True, "Stagger") == "Clinic"
    assert sending.sender(None, False, "Stagger") == "Stagger"
    assert sending.sender(None, True, "Stagger") is None


def test_quiet_hours_defer_to_the_next_allowed_instant() -> None:
    night = datetime(2026, 6, 1, 3, tzinfo=UTC)  # 03:00 in London (BST: 04:00)
    decided = sending.decide_quiet_hours("+447700900123", "08:00", "20:00", "UTC", night)
    assert decided.kind == "defer" and decided.retry_at is not None and decided.retry_at > night
    day = sending.decide_quiet_hours("+447700900123", "08:00", "20:00", "UTC", NOON)
    assert day == sending.SEND


@given(st.floats(-1e5, 1e5))
def test_a_retry_never_waits_less_than_a_second(seconds: float) -> None:
    from datetime import timedelta

    assert sending.wait_until(NOON + timedelta(seconds=seconds), NOON) >= sending.SHORTEST_WAIT
