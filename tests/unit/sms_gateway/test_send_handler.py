"""The engine's SMS side with a fake provider: answers become message states, refusals hold
the account through the credits handler, an uncertain send is looked up, never re-sent."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from services.sms_gateway.adapters.providers.base import SendReply
from services.sms_gateway.handlers import channel
from services.sms_gateway.handlers.channel import SmsAdapter
from shared.dispatch.queue import Claimed
from shared.events.schemas.messages import MessageAccepted
from shared.suppression import SuppressionList
from tests.support.fakes.sms import (
    FakeLedger,
    FakeOptOuts,
    FakeProviders,
    FakeQueue,
    FakeSmsProvider,
)
from tests.unit.sms_gateway.handler_kit import GROUP, SITE, site

PATIENT = "+61491570111"
OPEN = site()
MIDDAY = datetime(2026, 6, 1, 11, tzinfo=UTC)
"""Noon at the site (London, BST), where a mobile number's zone falls back to."""


class _Midday(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> _Midday:  # type: ignore[override]
        return cls.fromtimestamp(MIDDAY.timestamp(), tz)


@pytest.fixture(autouse=True)
def inside_sending_hours(monkeypatch: pytest.MonkeyPatch) -> None:
    """The patient's quiet hours are open (their rules are tested on their own)."""
    monkeypatch.setattr(channel, "datetime", _Midday)


class RecordingCredits:
    def __init__(self) -> None:
        self.balances: list[float | None] = []
        self.refusals: list[Any] = []

    async def after_send(
        self, account: str, site: Any, provider: Any, balance: Any, *_: Any
    ) -> None:
        self.balances.append(balance)

    async def refused(self, account: str, site: Any, provider: Any, why: Any) -> None:
        self.refusals.append(why)


def claimed(message_id: str = "m-1", attempts: int = 0, body: str = "See you at 9") -> Claimed:
    message = MessageAccepted(
        message_id=message_id,
        group_id=GROUP,
        site_id=SITE,
        channel="sms",
        to=PATIENT,
        body=body,
        submitted_at=datetime.now(UTC),
    )
    return Claimed(message_id, GROUP, SITE, PATIENT, message, attempts, None, None)


def adapter(
    provider: FakeSmsProvider, ledger: FakeLedger | None = None
) -> tuple[SmsAdapter, RecordingCredits, FakeOptOuts]:
    credits, optouts, queue = RecordingCredits(), FakeOptOuts(), FakeQueue()
    suppression = SuppressionList(None)  # type: ignore[arg-type]
    built = SmsAdapter(
        default_sender="Stagger",
        suppression=lambda: suppression,
        providers=lambda: FakeProviders(provider),  # type: ignore[arg-type,return-value]
        credits=credits,  # type: ignore[arg-type]
        ledger=ledger or FakeLedger(),  # type: ignore[arg-type]
        queue=lambda: queue,  # type: ignore[arg-type,return-value]
        optouts=optouts,  # type: ignore[arg-type]
    )
    return built, credits, optouts


async def test_an_accepted_send_is_sent_and_its_balance_goes_to_credits() -> None:
    provider = FakeSmsProvider(10)
    sms, credits, _ = adapter(provider)
    result = await sms.send(claimed(), OPEN)
    assert (result.outcome, result.provider_message_id) == ("sent", "fake-m-1")
    assert credits.balances == [9.0] and "m-1" in provider.sent


async def test_no_credit_holds_through_the_credit_handler() -> None:
    sms, credits, _ = adapter(FakeSmsProvider(0))
    result = await sms.send(claimed(), OPEN)
    assert result.outcome == "hold"
    assert result.error == "no credits left (balance 0, this message needs 1)"
    assert [r.kind for r in credits.refusals] == ["no_credit"]


async def test_an_uncertain_send_found_at_the_provider_is_not_sent_again() -> None:
    provider = FakeSmsProvider(10)
    sms, _, _ = adapter(provider)
    assert (await sms.send(claimed(), OPEN)).outcome == "sent"
    provider.replies.append(SendReply("ambiguous", detail="no answer"))
    again = await sms.send(claimed(attempts=1), OPEN)
    assert again.outcome == "sent" and again.provider_response is not None
    assert provider.replies  # the scripted answer was never used: nothing was POSTed


async def test_an_uncertain_send_not_found_is_retried_through_a_lookup() -> None:
    provider = FakeSmsProvider(10)
    provider.replies.append(SendReply("ambiguous", detail="no answer"))
    sms, _, _ = adapter(provider)
    result = await sms.send(claimed(), OPEN)
    assert result.outcome == "retry" and "looked up again" in (result.error or "")


async def test_a_provider_opt_out_fails_the_message_and_logs_the_opt_out() -> None:
    provider = FakeSmsProvider(10)
    provider.replies.append(SendReply("opted_out", detail="21610"))
    sms, _, optouts = adapter(provider)
    result = await sms.send(claimed(), OPEN)
    assert (result.outcome, result.provider_response) == ("failed", "21610")
    assert optouts.outs == [(GROUP, PATIENT, "provider")]


async def test_checks_before_the_provider() -> None:
    sms, _, _ = adapter(FakeSmsProvider(10))
    now = MIDDAY
    assert (await sms.check(claimed(), OPEN, now)).kind == "send"
    assert (await sms.check(claimed(body=" "), OPEN, now)).kind == "fail"
    unconfigured, _, _ = adapter(None)  # type: ignore[arg-type]
    assert (await unconfigured.check(claimed(), OPEN, now)).kind == "defer"


async def test_an_earlier_attempt_the_provider_cannot_tell_about_waits_unsent() -> None:
    """A provider whose reports lag cannot tell yet whether an earlier attempt reached it: a
    POST now could send the message twice, so it waits, without using an attempt, and its
    lookups count the lag from the earlier attempt, not from when the message was accepted."""
    provider = FakeSmsProvider(10)
    provider.reports_lag = True
    provider.replies.append(SendReply("ambiguous", detail="no answer"))
    sms, _, _ = adapter(provider)
    first = await sms.send(claimed(), OPEN)
    assert first.outcome == "retry" and first.attempt_used
    provider.replies.append(SendReply("accepted", provider_message_id="twice"))
    again = await sms.send(claimed(attempts=1), OPEN)
    assert again.outcome == "retry" and not again.attempt_used
    assert "cannot tell yet" in (again.error or "")
    assert provider.replies, "nothing was POSTed a second time"
    assert provider.looked_up[-1].attempted_at == MIDDAY  # the POST's instant (frozen clock)


async def test_an_attempt_made_elsewhere_counts_the_lag_from_the_first_look() -> None:
    """Attempted by another replica (nothing remembered here): it may have been a moment ago,
    so the lag counts from this replica's first lookup."""
    provider = FakeSmsProvider(10)
    provider.reports_lag = True
    sms, _, _ = adapter(provider)
    waiting = await sms.send(claimed(attempts=2), OPEN)
    assert waiting.outcome == "retry" and not waiting.attempt_used
    assert provider.looked_up[-1].attempted_at == MIDDAY
    assert "m-1" not in provider.sent


async def test_a_content_searched_lookup_is_told_the_ids_filed_under_the_recipients_tag() -> None:
    provider = FakeSmsProvider(10)
    provider.kind = "twilio"  # type: ignore[misc]  # no reference on the wire
    ledger = FakeLedger(
        provider_ids=[("tag-1", SITE, "m-0", "SM-0"), ("tag-2", SITE, "m-9", "SM-9")]
    )
    sms, _, _ = adapter(provider, ledger)
    # The ledger files a sealed message's number by its tag; the claim holds the number opened.
    found = await sms.reconcile(dataclasses.replace(claimed(), lookup="tag-1"), OPEN)
    assert found.sent is False
    assert provider.taken == [["SM-0"]]
