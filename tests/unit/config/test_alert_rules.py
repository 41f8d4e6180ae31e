"""The alert state machine (`services.config.domain.alerts`): raised once per condition,
cleared once when it ends, low credit cleared by a balance back at its threshold, and which
events carry which signals. Pure: no bus, no database."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from services.config.domain.alerts import (
    MAX_REASON,
    AlertState,
    Balance,
    Clear,
    Condition,
    Raise,
    Signal,
    Transition,
    redact,
    signals_of,
    step,
)
from shared.events.envelope import make_event
from shared.events.schemas.deadletter import DeadLetterRecorded
from shared.events.schemas.inbound_email import EmailAccountStatus
from shared.events.schemas.providers import (
    CreditBalanceReported,
    CreditLow,
    CreditTopupNeeded,
    SendingHeld,
    SendingResumed,
)

HELD = Condition("g-1", "sms_held", "acct-1")
LOW = Condition("g-1", "low_credit", "acct-1")


def run(signals: list[Signal], state: AlertState | None = None) -> list[Transition]:
    ids = (f"a-{n}" for n in itertools.count())
    current = state or AlertState()
    told: list[Transition] = []
    for signal in signals:
        current, transition = step(current, signal, next(ids))
        if transition is not None:
            told.append(transition)
    return told


held_signals = st.lists(
    st.one_of(
        st.builds(lambda: Raise(HELD, "held")),
        st.builds(lambda: Clear(HELD, "resumed")),
    ),
    max_size=40,
)


@given(held_signals)
def test_transitions_alternate_raised_then_cleared(signals: list[Signal]) -> None:
    told = run(signals)
    assert [t.kind for t in told] == ["raised", "cleared"] * (len(told) // 2) + (
        ["raised"] if len(told) % 2 else []
    )
    # Each cleared names the alert its raised opened.
    for up, down in zip(told[::2], told[1::2], strict=False):
        assert up.alert_id == down.alert_id


@given(held_signals)
def test_one_raised_per_run_of_holds_and_one_cleared_per_run_of_resumes(
    signals: list[Signal],
) -> None:
    # Collapse repeats: a condition that is already raised (or clear) is not told again.
    runs = [kind for kind, _ in itertools.groupby(type(s).__name__ for s in signals)]
    if runs and runs[0] == "Clear":
        runs = runs[1:]  # a resume with nothing raised tells nobody
    assert len(run(signals)) == len(runs)


@given(held_signals)
def test_replaying_a_signal_twice_changes_nothing_the_second_time(signals: list[Signal]) -> None:
    state = AlertState()
    for n, signal in enumerate(signals):
        state, _ = step(state, signal, f"a-{n}")
        again, transition = step(state, signal, f"b-{n}")
        assert transition is None and again == state


def test_a_resume_without_a_hold_tells_nobody() -> None:
    assert run([Clear(HELD, "resumed")]) == []


@given(st.floats(0, 1000), st.lists(st.floats(0, 1000, allow_nan=False), max_size=20))
def test_low_credit_clears_only_at_or_above_the_threshold_that_raised_it(
    threshold: float, balances: list[float]
) -> None:
    signals: list[Signal] = [Raise(LOW, "low", threshold=threshold)]
    signals += [Balance(LOW, b) for b in balances]
    told = run(signals)
    first_back = next((b for b in balances if b >= threshold), None)
    assert [t.kind for t in told] == (["raised"] if first_back is None else ["raised", "cleared"])
    if first_back is not None:
        assert f"{first_back:g}" in told[-1].summary


def test_a_balance_without_a_raised_low_credit_alert_does_nothing() -> None:
    assert run([Balance(LOW, 0.0), Balance(LOW, 500.0)]) == []


def test_a_raised_alert_keeps_its_id_and_first_summary_while_raised() -> None:
    state, first = step(AlertState(), Raise(HELD, "no credits left"), "a-1")
    state, again = step(state, Raise(HELD, "refused credentials"), "a-2")
    assert first is not None and again is None
    assert state.alert_id == "a-1" and state.summary == "no credits left"


# --- which events carry which signals -------------------------------------------------------


def envelope(data: object, group: str | None = "g-1") -> object:
    return make_event(data, source="test", actor="test", group_id=group)  # type: ignore[arg-type]


def test_a_hold_raises_sms_held_with_the_reason_and_no_secret() -> None:
    held = SendingHeld(
        account="acct-1",
        provider="twilio",
        reason="refused credentials: Authorization: Basic QUN4eHg6c2VjcmV0 (401)",
    )
    [signal] = signals_of(envelope(held))  # type: ignore[arg-type]
    assert isinstance(signal, Raise) and signal.condition == HELD
    assert "QUN4eHg6c2VjcmV0" not in signal.summary and "[redacted]" in signal.summary


def test_a_resume_clears_the_hold_and_the_top_up_and_reports_the_balance() -> None:
    resumed = SendingResumed(account="acct-1", provider="simulator", balance=90)
    signals = signals_of(envelope(resumed))  # type: ignore[arg-type]
    assert {(type(s).__name__, s.condition.kind) for s in signals} == {
        ("Clear", "sms_held"),
        ("Clear", "topup_needed"),
        ("Balance", "low_credit"),
    }


def test_top_up_needed_carries_the_providers_page() -> None:
    needed = CreditTopupNeeded(
        account="acct-1",
        provider="clicksend",
        reason="no credits left",
        topup_url="https://dashboard.clicksend.com/#/account/billing-recharge",
    )
    [signal] = signals_of(envelope(needed))  # type: ignore[arg-type]
    assert isinstance(signal, Raise) and signal.condition.kind == "topup_needed"
    assert signal.topup_url == needed.topup_url and needed.topup_url in signal.summary


def test_low_credit_raises_with_its_threshold_and_a_balance_report_is_a_balance() -> None:
    low = CreditLow(account="acct-1", provider="sim", balance=4, unit="credits", threshold=10)
    [signal] = signals_of(envelope(low))  # type: ignore[arg-type]
    assert isinstance(signal, Raise) and signal.threshold == 10
    report = CreditBalanceReported(
        account="acct-1", provider="sim", balance=50, unit="credits", source="poll"
    )
    [balance] = signals_of(envelope(report))  # type: ignore[arg-type]
    assert isinstance(balance, Balance) and balance.balance == 50


def test_email_sign_in_raised_only_by_a_refused_login_and_cleared_by_ok() -> None:
    now = datetime.now(UTC)

    def status(ok: bool, stage: str) -> list[Signal]:
        data = EmailAccountStatus(
            account="mail-1", group_id="g-1", ok=ok, stage=stage, error="535 bad", checked_at=now
        )  # type: ignore[arg-type]
        return signals_of(envelope(data, None))  # type: ignore[arg-type]

    assert [type(s).__name__ for s in status(False, "login")] == ["Raise"]
    assert status(False, "tls") == []
    assert [type(s).__name__ for s in status(True, "send")] == ["Clear"]


def test_a_dead_letter_is_attributed_to_the_group_in_its_kept_headers() -> None:
    letter = DeadLetterRecorded(
        consumer="sms-outbox",
        reason="undecodable",
        subject="outbox.sms.s-1",
        body="{}",
        body_encoding="utf-8",
        headers={"ce-groupid": "g-9", "ce-siteid": "s-1"},
    )
    [signal] = signals_of(envelope(letter, None))  # type: ignore[arg-type]
    assert signal.condition == Condition("g-9", "dead_letters", "sms-outbox")
    no_group = letter.model_copy(update={"headers": {}})
    assert signals_of(envelope(no_group, None)) == []  # type: ignore[arg-type]


@given(st.text(max_size=60))
def test_redacted_reasons_are_short_and_keep_no_sealed_value(text: str) -> None:
    cleaned = redact(f"{text}enc:v1:gAAAAABsecret {text}password=hunter2 {text}stg_abcdef")
    assert len(cleaned) <= MAX_REASON
    assert "gAAAAABsecret" not in cleaned and "hunter2" not in cleaned and "stg_abc" not in cleaned
