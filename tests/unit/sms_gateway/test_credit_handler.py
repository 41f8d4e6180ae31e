"""The credits handler with a fake provider: balance reports, low credit, top-up, hold, resume."""

from __future__ import annotations

from pathlib import Path

from services.sms_gateway.adapters import tables
from services.sms_gateway.adapters.credit_store import CreditStates, HoldRecords
from services.sms_gateway.domain.credit_hold import Refused
from services.sms_gateway.handlers.credits import Credits, CreditTiming
from shared.sites import Site
from tests.support.fakes.sms import FakeLimits, FakeProviders, FakeSmsProvider
from tests.unit.sms_gateway.handler_kit import Wakeups, event_types, gateway_tables, outbox, site

ACCOUNT = "acct-1"


def credits_over(
    sessions: object, provider: FakeSmsProvider, limits: FakeLimits, *sites: Site
) -> tuple[Credits, Wakeups]:
    wake = Wakeups()
    handler = Credits(
        # No poll limit: these tests ask twice in a row on purpose (the limit itself is
        # `may_poll`'s, tested in test_credit_hold; a 1 ms limit made them depend on speed).
        CreditTiming(report_seconds=0, resume_poll_seconds=0),
        sessions,  # type: ignore[arg-type]
        outbox(sessions, wake),  # type: ignore[arg-type]
        CreditStates(sessions),  # type: ignore[arg-type]
        HoldRecords(sessions, tables.DISPATCH.limiters),  # type: ignore[arg-type]
        lambda: FakeProviders(provider),  # type: ignore[arg-type,return-value]
        limits=lambda: limits,  # type: ignore[arg-type,return-value]
        sites_of=lambda account: list(sites),
    )
    return handler, wake


async def test_every_balance_after_a_send_is_reported_and_wakes_the_relay(tmp_path: Path) -> None:
    provider, limits = FakeSmsProvider(50), FakeLimits()
    async with gateway_tables(tmp_path) as sessions:
        credits, wake = credits_over(sessions, provider, limits)
        above = site(low_credit_threshold=10)
        await credits.after_send(ACCOUNT, above, provider, 49.0, 1.0, 2.0)
        await credits.after_send(ACCOUNT, above, provider, 48.0, 3.0, 4.0)
        assert await event_types(sessions) == ["credits.balance_reported"] * 2
        assert wake.count >= 2
        assert limits.calls == []


async def test_crossing_the_threshold_is_low_once_and_tops_up_once(tmp_path: Path) -> None:
    provider, limits = FakeSmsProvider(12), FakeLimits()
    low = site(low_credit_threshold=10, auto_topup_amount=100)
    async with gateway_tables(tmp_path) as sessions:
        credits, _ = credits_over(sessions, provider, limits, low)
        provider.amount = 9
        await credits.after_send(ACCOUNT, low, provider, 9.0, 1.0, 2.0)
        await credits.after_send(ACCOUNT, low, provider, 8.0, 3.0, 4.0)
        types = await event_types(sessions)
        assert types.count("credits.low") == 1
        assert types.count("credits.topup_requested") == 1
        assert provider.topups == [100]
        assert limits.held == {}


async def test_a_balance_below_one_segment_holds_once_and_a_refill_resumes(
    tmp_path: Path,
) -> None:
    provider, limits = FakeSmsProvider(0.5), FakeLimits()
    s = site(low_credit_threshold=0)
    async with gateway_tables(tmp_path) as sessions:
        credits, _ = credits_over(sessions, provider, limits, s)
        await credits.after_send(ACCOUNT, s, provider, 0.5, 1.0, 2.0)
        await credits.after_send(ACCOUNT, s, provider, 0.5, 3.0, 4.0)
        assert limits.held == {ACCOUNT: "no credits left"}
        assert (await event_types(sessions)).count("credits.sending_held") == 1
        assert not await credits.try_resume(ACCOUNT, s)
        provider.amount = 5
        assert await credits.try_resume(ACCOUNT, s)
        assert limits.held == {}
        assert (await event_types(sessions)).count("credits.sending_resumed") == 1


async def test_a_refused_send_holds_until_what_it_needed_is_there(tmp_path: Path) -> None:
    provider, limits = FakeSmsProvider(1.0), FakeLimits()
    s = site()
    async with gateway_tables(tmp_path) as sessions:
        credits, _ = credits_over(sessions, provider, limits, s)
        await credits.refused(ACCOUNT, s, provider, Refused("no_credit", "", 1.0, 3.0))
        assert limits.held == {ACCOUNT: "no credits left (balance 1, this message needs 3)"}
        provider.amount = 2.0
        assert not await credits.try_resume(ACCOUNT, s)
        provider.amount = 3.0
        assert await credits.try_resume(ACCOUNT, s)
        assert limits.held == {}


async def test_an_unreachable_provider_keeps_the_account_held(tmp_path: Path) -> None:
    provider, limits = FakeSmsProvider(10), FakeLimits()
    s = site()
    async with gateway_tables(tmp_path) as sessions:
        credits, _ = credits_over(sessions, provider, limits, s)
        await credits.refused(ACCOUNT, s, provider, Refused("bad_credentials", "401"))
        provider.unreachable = True
        assert not await credits.try_resume(ACCOUNT, s)
        assert ACCOUNT in limits.held
