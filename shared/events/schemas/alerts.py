"""Alerts to a group's admins (the ALERTS stream, `alerts.<group>`): a condition that needs a
person began (`raised`) or ended (`cleared`).

The config service decides them from the events that reveal the condition (a hold, a low
balance, a dead letter…) and publishes them so an auditor can replay who was told what and
when. Bodies never carry a secret: an account is named by its id, a provider's answer is cut
to a short reason.
"""

from __future__ import annotations

from typing import Literal

from shared.events.envelope import EventData
from shared.events.registry import registry

AlertCondition = Literal[
    "sms_held",
    "low_credit",
    "topup_needed",
    "email_sign_in",
    "dead_letters",
    "batch_late",
]


@registry.register
class AlertRaised(EventData):
    """A condition that needs a person began: sending held (credits or credentials), low
    credit, a top-up to buy by hand (`topup_url`: the provider's page), an email account
    that cannot sign in, dead letters, or a batch that will not fit its sessions within the
    site's warning. Raised once per condition; the group admins are emailed once."""

    event_type = "stagger.alert.raised"
    event_version = 1

    alert_id: str
    group_id: str
    site_id: str | None = None
    condition: AlertCondition
    key: str
    summary: str
    topup_url: str | None = None
    cause_event_id: str | None = None


@registry.register
class AlertCleared(EventData):
    """The condition of an alert ended (the account resumed, the balance is above the
    threshold again, the email account signs in again…); the group admins are told once."""

    event_type = "stagger.alert.cleared"
    event_version = 1

    alert_id: str
    group_id: str
    site_id: str | None = None
    condition: AlertCondition
    key: str
    summary: str
    cause_event_id: str | None = None
