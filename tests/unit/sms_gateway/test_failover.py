"""Failover in the SMS adapter with two fake provider accounts: an earlier attempt is settled
through both accounts before anything is sent, a found message is recorded under the account
that has it, an outage past `failover_after_seconds` holds the primary (only with a
secondary), a crash is reconciled through both accounts."""

from __future__ import annotations

from collections.abc import Collection

import pytest

from services.sms_gateway.adapters.providers import NotConfigured
from services.sms_gateway.adapters.providers.base import (
    Found,
    Outbound,
    ProviderError,
    SendReply,
)
from services.sms_gateway.domain import failover
from services.sms_gateway.handlers.channel import SmsAdapter
from shared.domain.site_settings import SettingsError, build, warnings
from shared.sites import Site
from shared.suppression import SuppressionList
from tests.support.fakes.sms import FakeLedger, FakeOptOuts, FakeQueue, FakeSmsProvider
from tests.unit.sms_gateway.handler_kit import ACCOUNT_ID, site
from tests.unit.sms_gateway.test_send_handler import (
    RecordingCredits,
    claimed,
    inside_sending_hours,  # noqa: F401  (autouse fixture)
)

SPARE_ID = "sim-spare"
SEALED = "enc:v1:gAAAAB-x_y="


class CannotLookUp(FakeSmsProvider):
    """An account whose lookups fail (an outage, refused credentials)."""

    async def lookup(self, message: Outbound, taken: Collection[str] = ()) -> Found:
        raise ProviderError("the provider is unreachable")


class TwoAccounts:
    """The provider registry: one fake per simulator account id."""

    def __init__(self, **by_account: FakeSmsProvider) -> None:
        self.by_account = by_account

    def for_site(self, site: Site) -> FakeSmsProvider:
        account_id = site.settings.sms.provider.account_id or ""
        if account_id not in self.by_account:
            raise NotConfigured("not in this test")
        return self.by_account[account_id]


def standby_site(**sms: object) -> Site:
    return site(
        secondary_provider={"kind": "simulator", "account_id": SPARE_ID},
        **sms,  # type: ignore[arg-type]
    )


def adapter(
    primary: FakeSmsProvider, spare: FakeSmsProvider
) -> tuple[SmsAdapter, RecordingCredits]:
    credits = RecordingCredits()
    queue = FakeQueue()
    suppression = SuppressionList(None)  # type: ignore[arg-type]
    providers = TwoAccounts(**{ACCOUNT_ID: primary, SPARE_ID: spare})
    built = SmsAdapter(
        default_sender="Stagger",
        suppression=lambda: suppression,
        providers=lambda: providers,  # type: ignore[arg-type,return-value]
        credits=credits,  # type: ignore[arg-type]
        ledger=FakeLedger(),  # type: ignore[arg-type]
        queue=lambda: queue,  # type: ignore[arg-type,return-value]
        optouts=FakeOptOuts(),  # type: ignore[arg-type]
    )
    return built, credits


def test_the_failover_site_swaps_the_accounts() -> None:
    sms, _ = adapter(FakeSmsProvider(), FakeSmsProvider())
    assert sms.failover(site()) is None
    home = standby_site()
    away = sms.failover(home)
    assert away is not None
    assert away.settings.sms.provider.account_id == SPARE_ID
    assert away.settings.sms.secondary_provider.account_id == ACCOUNT_ID
    assert sms.account_for(away) != sms.account_for(home)


async def test_an_uncertain_send_on_the_primary_found_there_does_not_go_through_the_spare() -> None:
    primary, spare = FakeSmsProvider(10), FakeSmsProvider(10)
    sms, _ = adapter(primary, spare)
    home = standby_site()
    # Stored at the primary (say its answer never came and it went back with an attempt).
    assert (await sms.send(claimed(), home)).outcome == "sent"
    away = sms.failover(home)
    assert away is not None
    result = await sms.send(claimed(attempts=1), away)
    assert result.outcome == "sent"
    assert result.account == sms.account_for(home)
    assert spare.sent == {}


async def test_an_earlier_attempt_found_nowhere_goes_through_the_spare() -> None:
    primary, spare = FakeSmsProvider(10), FakeSmsProvider(10)
    sms, _ = adapter(primary, spare)
    away = sms.failover(standby_site())
    assert away is not None
    result = await sms.send(claimed(attempts=1), away)
    assert (result.outcome, result.account) == ("sent", None)
    assert list(spare.sent) == ["m-1"] and primary.sent == {}


async def test_an_earlier_attempt_the_primary_cannot_settle_waits() -> None:
    primary, spare = CannotLookUp(10), FakeSmsProvider(10)
    sms, _ = adapter(primary, spare)
    away = sms.failover(standby_site())
    assert away is not None
    result = await sms.send(claimed(attempts=1), away)
    assert result.outcome == "retry" and "not sent here until" in (result.error or "")
    assert spare.sent == {}


async def test_a_first_attempt_goes_straight_through_the_spare() -> None:
    primary, spare = CannotLookUp(0), FakeSmsProvider(10)
    sms, _ = adapter(primary, spare)
    away = sms.failover(standby_site())
    assert away is not None
    assert (await sms.send(claimed(), away)).outcome == "sent"
    assert list(spare.sent) == ["m-1"]


async def test_an_outage_past_the_limit_holds_the_primary_only_with_a_spare() -> None:
    for home, held in ((standby_site(failover_after_seconds=0), True), (site(), False)):
        primary = FakeSmsProvider(10)
        primary.replies.append(SendReply("unavailable", detail="HTTP 503"))
        sms, credits = adapter(primary, FakeSmsProvider(10))
        result = await sms.send(claimed(), home)
        assert result.outcome == "retry"
        assert [r.kind for r in credits.refusals] == (["unreachable"] if held else [])
        if held:
            assert "unreachable for 0 s (HTTP 503)" in credits.refusals[0].detail


async def test_an_outage_shorter_than_the_limit_holds_nothing_and_an_answer_ends_it() -> None:
    primary = FakeSmsProvider(10)
    primary.replies.append(SendReply("unavailable", detail="HTTP 503"))
    sms, credits = adapter(primary, FakeSmsProvider(10))
    home = standby_site(failover_after_seconds=300)
    assert (await sms.send(claimed(), home)).outcome == "retry"
    assert (await sms.send(claimed("m-2"), home)).outcome == "sent"
    assert credits.refusals == []


async def test_a_crash_is_reconciled_through_both_accounts() -> None:
    primary, spare = CannotLookUp(10), FakeSmsProvider(10)
    sms, _ = adapter(primary, spare)
    home = standby_site()
    unknown = await sms.reconcile(claimed(), home)
    assert unknown.sent is None, "the primary cannot tell: not settled as absent"
    away = sms.failover(home)
    assert away is not None
    assert (await sms.send(claimed(), away)).outcome == "sent"  # then the replica crashed
    found = await sms.reconcile(claimed(), home)
    assert (found.sent, found.account) == (True, sms.account_for(away))
    absent = await adapter(FakeSmsProvider(10), FakeSmsProvider(10))[0].reconcile(claimed(), home)
    assert absent.sent is False


def test_the_outage_rule() -> None:
    assert failover.outage_began("accepted", 5.0, 9.0) is None
    assert failover.outage_began("rate_limited", 5.0, 9.0) is None
    assert failover.outage_began("unavailable", None, 9.0) == 9.0
    assert failover.outage_began("ambiguous", 5.0, 9.0) == 5.0
    assert failover.outage_holds(5.0, 9.0, 4.0) and not failover.outage_holds(5.0, 8.9, 4.0)
    assert not failover.outage_holds(None, 9.0, 0.0)


@pytest.mark.parametrize(
    ("sms", "message"),
    [
        (
            {
                "provider": {"kind": "simulator", "account_id": "a"},
                "secondary_provider": {"kind": "simulator", "account_id": "a"},
            },
            "another account",
        ),
        ({"failover_after_seconds": -1}, "greater than or equal"),
    ],
)
def test_settings_refuse_a_secondary_that_cannot_fail_over(
    sms: dict[str, object], message: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        build({"sms": sms})
    (field,) = refused.value.errors
    assert field.startswith("sms.") and message in refused.value.errors[field]


async def test_attempts_the_primary_certainly_refused_move_without_a_lookup_there() -> None:
    primary, spare = CannotLookUp(10), FakeSmsProvider(10)
    primary.replies.append(SendReply("not_sent", detail="connection refused"))
    sms, _ = adapter(primary, spare)
    home = standby_site()
    away = sms.failover(home)
    assert away is not None
    # Refused for certain, then an attempt whose lookup failed (nothing POSTed in it).
    assert (await sms.send(claimed(attempts=0), home)).outcome == "retry"
    with pytest.raises(ProviderError):
        await sms.send(claimed(attempts=1), home)
    assert (await sms.send(claimed(attempts=2), away)).outcome == "sent"
    assert list(spare.sent) == ["m-1"]
    # A replica that did not see those answers must ask the primary, and cannot.
    other, _ = adapter(primary, FakeSmsProvider(10))
    assert (await other.send(claimed(attempts=2), away)).outcome == "retry"


async def test_an_attempt_answered_5xx_is_looked_up_before_it_moves() -> None:
    primary, spare = CannotLookUp(10), FakeSmsProvider(10)
    primary.replies.append(SendReply("unavailable", detail="HTTP 503"))
    sms, _ = adapter(primary, spare)
    home = standby_site()
    away = sms.failover(home)
    assert away is not None
    assert (await sms.send(claimed(attempts=0), home)).outcome == "retry"
    assert (await sms.send(claimed(attempts=1), away)).outcome == "retry"
    assert spare.sent == {}


def test_a_secondary_without_a_primary_or_credentials_is_a_warning() -> None:
    lonely = build({"sms": {"secondary_provider": {"kind": "simulator", "account_id": "b"}}})
    assert "sms.secondary_provider" in {w["field"] for w in warnings(lonely)}
    half = build(
        {
            "sms": {
                "provider": {"kind": "simulator", "account_id": "a", "secret": SEALED},
                "secondary_provider": {"kind": "simulator", "account_id": "b"},
            }
        }
    )
    found = [w for w in warnings(half) if w["field"] == "sms.secondary_provider"]
    assert found and "incomplete" in found[0]["message"]
