"""Receipts settle only a message of the account they came through; early ones come back."""

from __future__ import annotations

from datetime import UTC, datetime

from services.sms_gateway.adapters.account_sites import AccountSites
from services.sms_gateway.adapters.providers.base import Receipt
from services.sms_gateway.handlers.receipt import ReceiptHandler
from shared.dispatch import schema
from shared.domain.accounts import sms_account_id
from tests.support.fakes.sms import FakeLedger, FakeQueue
from tests.unit.sms_gateway.handler_kit import ACCOUNT_ID, Wakeups, directory, site

OURS = site()
THEIRS = site("s-2", group="g-2", account_id="other-acct")
ACCOUNT = sms_account_id(OURS.settings.sms.provider, OURS.group_id) or ""


def receipt(reference: str | None, delivered: bool | None, account_id: str = ACCOUNT_ID) -> Receipt:
    return Receipt(
        reference, "p-1", delivered, "delivered", None, datetime.now(UTC), account_id=account_id
    )


class Sweeps:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1


def handler(queue: FakeQueue, ledger: FakeLedger) -> tuple[ReceiptHandler, Wakeups, Sweeps]:
    wake, sweeps = Wakeups(), Sweeps()
    sites = directory(OURS, THEIRS)
    found = ReceiptHandler(
        queue=lambda: queue,  # type: ignore[arg-type,return-value]
        ledger=ledger,  # type: ignore[arg-type]
        account_sites=AccountSites(),
        sites=lambda: sites,
        wake_relay=wake,
        resume_held=sweeps,
    )
    return found, wake, sweeps


async def test_a_receipt_settles_its_message_once_and_wakes_the_relay() -> None:
    queue = FakeQueue(sent={(ACCOUNT, "m-1"): "p-1"})
    receipts, wake, sweeps = handler(queue, FakeLedger())
    first = await receipts.handle(receipt("m-1", True), "simulator")
    assert (first.status, first.message_id) == ("recorded", "m-1")
    assert queue.settled == {"m-1": True} and wake.count == 1
    again = await receipts.handle(receipt("m-1", True), "simulator")
    assert again.status == "ignored" and wake.count == 1
    await receipts.settled()
    assert sweeps.count == 1  # a sign of life: held accounts are looked at again


async def test_another_accounts_receipt_naming_our_message_settles_nothing() -> None:
    queue = FakeQueue(sent={(ACCOUNT, "m-1"): "p-1"})
    receipts, _, _ = handler(queue, FakeLedger(states={"m-1": schema.SENT}))
    result = await receipts.handle(receipt("m-1", False, "other-acct"), "simulator")
    assert result.status == "ignored" and queue.settled == {}


async def test_a_receipt_before_its_send_is_recorded_asks_to_come_back() -> None:
    receipts, _, _ = handler(FakeQueue(), FakeLedger(states={"m-2": schema.SENDING}))
    assert (await receipts.handle(receipt("m-2", True), "simulator")).status == "retry"


async def test_progress_reports_change_nothing() -> None:
    queue = FakeQueue(sent={(ACCOUNT, "m-1"): "p-1"})
    receipts, wake, _ = handler(queue, FakeLedger())
    assert (await receipts.handle(receipt("m-1", None), "simulator")).status == "progress"
    assert queue.settled == {} and wake.count == 0
