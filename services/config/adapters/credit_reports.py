"""An SMS provider account's credit reports, read from the PROVIDERS stream itself.

The credits page and the credit-aware forecast need the account's *latest* report and its
reports over a window. Both come from the account's own subject (`credits.<account>`), so no
other account's events crowd them out and the newest is always there: the window starts at
the first message at or after its start time (a direct get by time) and is read to its end,
keeping the newest `MAX_REPORTS`. The account id is derived from a site the caller may see,
so reading by it keeps tenants apart.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from shared.bus import subjects
from shared.bus.topology import PROVIDERS
from shared.events.envelope import Envelope
from shared.events.schemas.providers import (
    CreditBalanceReported,
    CreditLow,
    CreditTopupRequested,
    SendingHeld,
    SendingResumed,
)
from shared.eventstore import EventStore

log = logging.getLogger(__name__)

MAX_REPORTS = 5000
"""Reports kept per account and window (the newest); reports after sends are coalesced."""


@dataclass(frozen=True)
class Report:
    """One balance the provider reported, when, and what kind of event carried it."""

    at: datetime
    balance: float
    kind: str


@dataclass
class AccountCredits:
    """What the stream says about one account."""

    account: str
    reports: list[Report] = field(default_factory=list)
    notes: list[dict[str, str]] = field(default_factory=list)
    unit: str = "credits"
    latest: Report | None = None
    any_events: bool = False


def balance_of(event: Envelope) -> float | None:
    """The balance an event reports, or None (a top-up reports the balance after it)."""
    data = event.data
    if isinstance(data, CreditBalanceReported | CreditLow):
        return data.balance
    if isinstance(data, CreditTopupRequested):
        return data.balance_after
    if isinstance(data, SendingHeld | SendingResumed):
        return data.balance
    return None


def kind_of(event: Envelope) -> str:
    """`balance_reported`, `low`, … from the event type."""
    return event.type.removeprefix("stagger.credits.")


async def _first_since(nc: Client, subject: str, since: datetime) -> int | None:
    """Sequence of the subject's first message at or after `since` (None: there is none)."""
    request = {"start_time": since.isoformat(), "next_by_subj": subject}
    try:
        reply = await nc.request(
            f"$JS.API.DIRECT.GET.{PROVIDERS}", json.dumps(request).encode(), timeout=2
        )
    except (NoRespondersError, NatsTimeout):
        return 1  # no direct get: read the subject from its start
    headers = reply.headers or {}
    if headers.get("Status") == "404" or "Nats-Sequence" not in headers:
        return None
    return int(headers["Nats-Sequence"])


async def account_credits(nc: Client, account: str, since: datetime) -> AccountCredits:
    """The account's reports since `since` (newest `MAX_REPORTS`), its notes (holds, top-ups,
    low-credit crossings) and its latest report, however old."""
    subject = subjects.credits(account)
    store = EventStore(nc, PROVIDERS)
    found = AccountCredits(account)
    last = await store.last(subject)
    if last is None:
        return found
    found.any_events = True
    reports: deque[Report] = deque(maxlen=MAX_REPORTS)
    notes: deque[dict[str, str]] = deque(maxlen=10)
    start = await _first_since(nc, subject, since)
    if start is not None:
        async for event in store.replay(filter_subject=subject, from_sequence=start, lenient=True):
            unit = getattr(event.data, "unit", None)
            if isinstance(unit, str) and unit:
                found.unit = unit
            balance = balance_of(event)
            if balance is not None:
                reports.append(Report(event.time, float(balance), kind_of(event)))
            if kind_of(event) != "balance_reported":
                notes.append(
                    {
                        "time": event.time.isoformat(),
                        "kind": kind_of(event).replace("_", " "),
                        "detail": str(
                            getattr(event.data, "reason", "") or getattr(event.data, "error", "")
                        ),
                    }
                )
    found.reports = list(reports)
    found.notes = list(notes)
    found.latest = found.reports[-1] if found.reports else None
    if found.latest is None:
        # Nothing in the window: the last report before it is still the current balance.
        balance = balance_of(last)
        if balance is not None:
            found.latest = Report(last.time, float(balance), kind_of(last))
    return found


async def latest_balance(nc: Client, account: str, since: datetime) -> tuple[float, str] | None:
    """(balance, unit) of the account's latest report, or None when none was ever made."""
    last = await EventStore(nc, PROVIDERS).last(subjects.credits(account))
    if last is None:
        return None
    balance = balance_of(last)
    unit = getattr(last.data, "unit", None) or "credits"
    if balance is not None:
        return float(balance), unit
    found = await account_credits(nc, account, since)  # the last event carried no balance
    if found.latest is None:
        return None
    return found.latest.balance, found.unit


def hold_of(credits: AccountCredits) -> str | None:
    """Why the account's sending is held (its last hold or resume note), or None."""
    for note in reversed(credits.notes):
        if note["kind"] == "sending resumed":
            return None
        if note["kind"] == "sending held":
            return note["detail"] or "held by the SMS gateway"
    return None
