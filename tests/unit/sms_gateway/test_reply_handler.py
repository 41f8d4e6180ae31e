"""Replies: attributed to the group sending through the account, opt-outs acted on at once,
one reply event per inbound SMS, and nothing guessed when no single group can be named."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from services.sms_gateway.adapters.account_sites import AccountSites
from services.sms_gateway.adapters.providers.base import Inbound
from services.sms_gateway.handlers.reply import ReplyHandler
from shared.domain.accounts import sms_account_id
from shared.domain.reply_attribution import SentMessage, Unrouted
from shared.suppression import SuppressionList
from tests.support.fakes.sms import FakeLedger, FakeOptOuts, FakeQueue
from tests.unit.sms_gateway.handler_kit import (
    ACCOUNT_ID,
    GROUP,
    SITE,
    Wakeups,
    directory,
    event_types,
    gateway_tables,
    outbox,
    site,
)

PATIENT, SENDER = "+61491570111", "+61491570999"
OURS = site()
ACCOUNT = sms_account_id(OURS.settings.sms.provider, OURS.group_id) or ""


def inbound(inbound_id: str, body: str, account_id: str = ACCOUNT_ID) -> Inbound:
    return Inbound(
        inbound_id, PATIENT, SENDER, body, datetime.now(UTC), in_reply_to="m-1",
        account_id=account_id,
    )  # fmt: skip


class Kit:
    def __init__(self, sessions: object) -> None:
        self.queue = FakeQueue()
        self.optouts = FakeOptOuts()
        self.suppression = SuppressionList(None)  # type: ignore[arg-type]
        self.ledger = FakeLedger(messages=[SentMessage("m-1", SITE, ACCOUNT, PATIENT)])
        self.wake = Wakeups()
        sites = directory(OURS)
        self.handler = ReplyHandler(
            sessions=sessions,  # type: ignore[arg-type]
            events=outbox(sessions, self.wake),  # type: ignore[arg-type]
            ledger=self.ledger,  # type: ignore[arg-type]
            account_sites=AccountSites(),
            sites=lambda: sites,
            suppression=lambda: self.suppression,
            queue=lambda: self.queue,  # type: ignore[arg-type,return-value]
            optouts=self.optouts,  # type: ignore[arg-type]
        )


async def test_stop_opts_the_number_out_of_the_group_at_once(tmp_path: Path) -> None:
    async with gateway_tables(tmp_path) as sessions:
        kit = Kit(sessions)
        assert await kit.handler.handle(inbound("in-1", "STOP"), "simulator") == "optout"
        assert kit.suppression.is_suppressed(GROUP, "sms", PATIENT)
        assert kit.queue.suppressed == [(GROUP, PATIENT)]
        assert kit.optouts.outs == [(GROUP, PATIENT, "keyword")]
        assert await event_types(sessions) == ["reply.received"]


async def test_start_opts_back_in(tmp_path: Path) -> None:
    async with gateway_tables(tmp_path) as sessions:
        kit = Kit(sessions)
        await kit.handler.handle(inbound("in-1", "STOP"), "simulator")
        assert await kit.handler.handle(inbound("in-2", "START"), "simulator") == "optin"
        assert not kit.suppression.is_suppressed(GROUP, "sms", PATIENT)
        assert kit.optouts.ins == [(GROUP, PATIENT, "keyword")]


async def test_a_provider_retry_of_the_same_reply_is_acted_on_once(tmp_path: Path) -> None:
    async with gateway_tables(tmp_path) as sessions:
        kit = Kit(sessions)
        first = await kit.handler.handle(inbound("in-1", "thanks, see you"), "simulator")
        assert first != "duplicate"
        assert await kit.handler.handle(inbound("in-1", "thanks, see you"), "simulator") == (
            "duplicate"
        )
        assert await event_types(sessions) == ["reply.received"]
        assert kit.wake.count == 1


async def test_a_reply_through_an_unknown_account_is_kept_and_changes_nothing(
    tmp_path: Path,
) -> None:
    async with gateway_tables(tmp_path) as sessions:
        kit = Kit(sessions)
        why = await kit.handler.handle(inbound("in-1", "STOP", "nobody"), "simulator")
        assert isinstance(why, Unrouted)
        assert not kit.suppression.is_suppressed(GROUP, "sms", PATIENT)
        assert kit.optouts.outs == [] and kit.queue.suppressed == []
        assert await event_types(sessions) == []
