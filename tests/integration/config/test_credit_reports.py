"""Credit reports read from the PROVIDERS stream: the latest balance is the latest report, the
chart gets every report of the window, and "no events" is per account (a busy account never
hides another's reports)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client

from services.config.adapters.credit_reports import account_credits
from shared.bus import subjects
from shared.bus.topology import PROVIDERS, ensure_streams
from shared.events.envelope import EventData, make_event
from shared.events.schemas.providers import (
    CreditBalanceReported,
    CreditTopupRequested,
    SendingHeld,
)
from shared.eventstore import EventStore


async def _publish(nc: Client, account: str, data: EventData) -> None:
    event = make_event(data, source="sms_gateway", actor="service:sms_gateway", subject=account)
    await EventStore(nc, PROVIDERS).append(subjects.credits(account), event)


def _report(account: str, balance: float) -> CreditBalanceReported:
    return CreditBalanceReported(
        account=account, provider="simulator", balance=balance, unit="credits", source="send"
    )


async def test_the_latest_report_is_the_balance_and_every_report_is_charted(nc: Client) -> None:
    await ensure_streams(nc.jetstream())
    busy, quiet, silent = (f"acct-{uuid.uuid4().hex[:8]}" for _ in range(3))
    # The run of the issue: 1,000 credits spent down to 0, held, topped up, then 50 left.
    for balance in range(1000, -1, -50):
        await _publish(nc, busy, _report(busy, float(balance)))
    await _publish(
        nc, busy, SendingHeld(account=busy, provider="simulator", reason="no credits", balance=0)
    )
    await _publish(
        nc,
        busy,
        CreditTopupRequested(
            account=busy,
            provider="simulator",
            amount=100,
            balance_before=0,
            ok=True,
            balance_after=100,
        ),
    )
    await _publish(nc, busy, _report(busy, 50.0))
    for balance in (300.0, 280.0):
        await _publish(nc, quiet, _report(quiet, balance))

    since = datetime.now(UTC) - timedelta(days=30)
    got = await account_credits(nc, busy, since)
    assert got.latest is not None and got.latest.balance == 50.0
    assert [r.balance for r in got.reports][-4:] == [0.0, 0.0, 100.0, 50.0]
    assert len(got.reports) == 21 + 3
    assert [n["kind"] for n in got.notes] == ["sending held", "topup requested"]

    other = await account_credits(nc, quiet, since)
    assert other.any_events and [r.balance for r in other.reports] == [300.0, 280.0]
    assert other.latest is not None and other.latest.balance == 280.0

    nothing = await account_credits(nc, silent, since)
    assert (nothing.any_events, nothing.latest, nothing.reports) == (False, None, [])


async def test_reports_older_than_the_window_still_give_the_balance(nc: Client) -> None:
    await ensure_streams(nc.jetstream())
    account = f"acct-{uuid.uuid4().hex[:8]}"
    await _publish(nc, account, _report(account, 75.0))
    later = datetime.now(UTC) + timedelta(minutes=1)  # a window that starts after the report
    got = await account_credits(nc, account, later)
    assert got.reports == []
    assert got.latest is not None and got.latest.balance == 75.0
