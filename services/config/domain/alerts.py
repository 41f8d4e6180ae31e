"""Alerts to a group's admins: which events reveal a condition, and the state machine that
raises each condition once and clears it once when it ends.

Pure: no I/O. The alert projection (`adapters/alerts.py`) feeds it the PROVIDERS and
DEADLETTER events, stores each condition's state with the projection's position, and queues
the transitions it decides (`stagger.alert.raised` / `cleared`) for publishing and email.

A condition is (group, kind, key): the key names what it is about — an SMS or email account,
a dead-letter consumer, a batch. A signal either raises it, clears it, or (low credit) reports
a balance that clears it once it is back at or above the threshold that raised it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from shared.events.envelope import Envelope
from shared.events.schemas.alerts import AlertCondition
from shared.events.schemas.deadletter import DeadLetterRecorded
from shared.events.schemas.inbound_email import EmailAccountStatus
from shared.events.schemas.providers import (
    CreditBalanceReported,
    CreditLow,
    CreditTopupNeeded,
    CreditTopupRequested,
    SendingHeld,
    SendingResumed,
)

MAX_REASON = 200
"""A provider's or server's answer is cut to this many characters in an alert."""

# What could be a secret inside a reason: sealed values, API tokens, bearer or basic
# credentials, `key=value` pairs naming a password, key, secret or token.
_SECRETS = re.compile(
    r"enc:v\d+:\S+"
    r"|stg_\S+"
    r"|\b(?:bearer|basic)\s+\S+"
    # Not anchored to a word start: "x-api-key=…" and "mypassword:…" are credentials too.
    r"|(?:password|passwd|pwd|secret|token|api[_-]?key|key)\s*[=:]\s*\S+",
    re.IGNORECASE,
)


def redact(text: str | None) -> str:
    """A reason fit for an alert: anything that looks like a credential is replaced by
    `[redacted]`, and the text is cut to `MAX_REASON` characters."""
    cleaned = _SECRETS.sub("[redacted]", " ".join((text or "").split()))
    if len(cleaned) > MAX_REASON:
        cleaned = cleaned[: MAX_REASON - 1] + "…"
    return cleaned


@dataclass(frozen=True)
class Condition:
    """What an alert is about: a group, the kind of condition and its subject (an account
    id, a consumer, a batch id)."""

    group_id: str
    kind: AlertCondition
    key: str


@dataclass(frozen=True)
class Raise:
    """The condition holds now."""

    condition: Condition
    summary: str
    site_id: str | None = None
    topup_url: str | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class Clear:
    """The condition ended."""

    condition: Condition
    summary: str
    site_id: str | None = None


@dataclass(frozen=True)
class Balance:
    """A balance was reported; it clears a low-credit alert once back at its threshold."""

    condition: Condition
    balance: float
    site_id: str | None = None


Signal = Raise | Clear | Balance


@dataclass(frozen=True)
class AlertState:
    """A condition's stored state: whether it is raised, the open alert's id, and what was
    said when it was raised."""

    active: bool = False
    alert_id: str | None = None
    site_id: str | None = None
    summary: str = ""
    topup_url: str | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class Transition:
    """A change to tell the group admins about."""

    kind: Literal["raised", "cleared"]
    condition: Condition
    alert_id: str
    summary: str
    site_id: str | None = None
    topup_url: str | None = None


def step(state: AlertState, signal: Signal, new_id: str) -> tuple[AlertState, Transition | None]:
    """Apply one signal: raise an inactive condition (a new alert id), clear an active one;
    anything else changes nothing that anyone is told about."""
    if isinstance(signal, Raise):
        if state.active:
            # Already told: keep the alert, note a newer threshold (a later crossing).
            threshold = signal.threshold if signal.threshold is not None else state.threshold
            return replace(state, threshold=threshold), None
        raised = AlertState(
            active=True,
            alert_id=new_id,
            site_id=signal.site_id,
            summary=signal.summary,
            topup_url=signal.topup_url,
            threshold=signal.threshold,
        )
        return raised, Transition(
            "raised", signal.condition, new_id, signal.summary, signal.site_id, signal.topup_url
        )
    if not state.active or state.alert_id is None:
        return state, None
    if isinstance(signal, Balance):
        if state.threshold is None or signal.balance < state.threshold:
            return state, None
        summary = (
            f"Credit for SMS account {signal.condition.key} is back at {signal.balance:g} "
            f"(the low-credit level is {state.threshold:g})."
        )
        site_id = signal.site_id or state.site_id
    else:
        summary, site_id = signal.summary, signal.site_id or state.site_id
    cleared = replace(state, active=False, summary=summary)
    return cleared, Transition("cleared", signal.condition, state.alert_id, summary, site_id)


def signals_of(event: Envelope) -> list[Signal]:
    """The signals one event carries (none for most events)."""
    data = event.data
    group = getattr(data, "group_id", None) or event.group_id
    site = getattr(data, "site_id", None) or event.site_id
    if isinstance(data, DeadLetterRecorded):
        # A dead letter is about the message it keeps: its group is in the kept headers.
        group = group or data.headers.get("ce-groupid")
        site = site or data.headers.get("ce-siteid")
    if not group:
        return []
    if isinstance(data, SendingHeld | SendingResumed | CreditTopupNeeded | CreditLow):
        return _credit_signals(group, site, data)
    if isinstance(data, CreditBalanceReported):
        return [Balance(Condition(group, "low_credit", data.account), data.balance, site)]
    if isinstance(data, CreditTopupRequested) and data.balance_after is not None:
        return [Balance(Condition(group, "low_credit", data.account), data.balance_after, site)]
    if isinstance(data, EmailAccountStatus):
        return _email_signals(group, site, data)
    if isinstance(data, DeadLetterRecorded):
        return _dead_letter_signals(group, site, data)
    return []


def _credit_signals(
    group: str,
    site: str | None,
    data: SendingHeld | SendingResumed | CreditTopupNeeded | CreditLow,
) -> list[Signal]:
    account = data.account
    if isinstance(data, SendingHeld):
        return [
            Raise(
                Condition(group, "sms_held", account),
                f"SMS sending is held for account {account}: {redact(data.reason)}. "
                "Queued messages wait and nothing is lost; sending resumes by itself once "
                "the cause is fixed.",
                site,
            )
        ]
    if isinstance(data, SendingResumed):
        resumed = f"SMS sending resumed for account {account}."
        signals: list[Signal] = [
            Clear(Condition(group, "sms_held", account), resumed, site),
            Clear(Condition(group, "topup_needed", account), resumed, site),
        ]
        if data.balance is not None:
            signals.append(Balance(Condition(group, "low_credit", account), data.balance, site))
        return signals
    if isinstance(data, CreditTopupNeeded):
        where = f" at {data.topup_url}" if data.topup_url else " at the provider"
        return [
            Raise(
                Condition(group, "topup_needed", account),
                f"SMS account {account} ({data.provider}) has run out of credit and the "
                f"provider cannot be topped up automatically: buy credit{where}. Sending "
                "resumes by itself once the credit is there.",
                site,
                topup_url=data.topup_url,
            )
        ]
    return [
        Raise(
            Condition(group, "low_credit", account),
            f"Credit for SMS account {account} is low: {data.balance:g} {data.unit} left, "
            f"under the low-credit level of {data.threshold:g}.",
            site,
            threshold=data.threshold,
        )
    ]


def _email_signals(group: str, site: str | None, data: EmailAccountStatus) -> list[Signal]:
    condition = Condition(group, "email_sign_in", data.account)
    if data.ok:
        return [Clear(condition, f"Email account {data.account} signs in again.", site)]
    if data.stage != "login":
        return []
    return [
        Raise(
            condition,
            f"Email account {data.account} cannot sign in: {redact(data.error)}. Its email "
            "waits until it can; check the account's password or consent in the wizard.",
            site,
        )
    ]


def _dead_letter_signals(group: str, site: str | None, data: DeadLetterRecorded) -> list[Signal]:
    return [
        Raise(
            Condition(group, "dead_letters", data.consumer),
            f"A message could not be processed by {data.consumer} and was set aside "
            f"(dead-lettered): {redact(data.reason)}. An operator should look at the "
            "DEADLETTER stream.",
            site,
        )
    ]
