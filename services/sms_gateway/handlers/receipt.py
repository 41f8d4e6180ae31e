"""A delivery receipt: settle the message it names, if the account it came through sent it.

Only a message sent through the account the receipt came from can match: another tenant's
account naming our id (or provider id) settles nothing. A receipt for a message whose send is
still being recorded asks the provider to come back (`retry`); repeats change nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from services.sms_gateway.adapters.account_sites import AccountSites
from services.sms_gateway.adapters.ledger import Ledger
from services.sms_gateway.adapters.providers.base import Receipt
from shared.dispatch import schema
from shared.dispatch.queue import MessageQueue
from shared.dispatch.queue.receipts import ReceiptIn
from shared.dispatch.receipt_group import ReceiptGroup
from shared.sites import SiteDirectory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReceiptResult:
    """What became of a receipt: `recorded` (with the message), `progress` (not final),
    `retry` (its send is not recorded yet), or `ignored` (duplicate or unknown)."""

    status: Literal["recorded", "progress", "retry", "ignored"]
    message_id: str | None = None


class ReceiptHandler:
    """Delivery receipts of every provider."""

    def __init__(
        self,
        *,
        queue: Callable[[], MessageQueue],
        ledger: Ledger,
        account_sites: AccountSites,
        sites: Callable[[], SiteDirectory],
        wake_relay: Callable[[], None],
        resume_held: Callable[[], Coroutine[Any, Any, None]],
    ) -> None:
        # The engine makes its queue and site directory when it starts: read at use.
        self._queue = queue
        self._ledger = ledger
        self._account_sites = account_sites
        self._sites = sites
        self._wake_relay = wake_relay
        self._resume_held = resume_held
        self._background: set[asyncio.Task[None]] = set()
        # Receipts arriving together share a transaction (`receipt_group`); one group per
        # queue (the engine's, made when it starts).
        self._group: ReceiptGroup | None = None

    async def handle(self, receipt: Receipt, provider: str) -> ReceiptResult:
        """Settle the receipt's message (idempotent)."""
        if receipt.delivered is None:
            return ReceiptResult("progress")
        lines = self._account_sites.on_account(self._sites(), provider, receipt.account_id)
        accounts = {s.account for s in lines if s.account}
        sites = {s.site_id for s in lines}
        matched = await self._grouped().receipt(
            ReceiptIn(
                accounts=accounts,
                message_id=receipt.reference,
                provider_message_id=None if receipt.reference else receipt.provider_message_id,
                delivered=receipt.delivered,
                occurred_at=receipt.occurred_at,
                raw_status=receipt.raw_status,
                reason=receipt.error or "",
            )
        )
        if matched is not None:
            self._wake_relay()
            # Credits may have come back (a receipt is a sign of life): not on the reply path.
            self._in_background(self._resume_held())
            return ReceiptResult("recorded", matched)
        # A message not sent yet has no account recorded: its site stands in for it.
        state = await self._ledger.state(receipt.reference, receipt.provider_message_id, sites)
        if state in (schema.QUEUED, schema.SENDING):
            return ReceiptResult("retry")
        return ReceiptResult("ignored")

    def _grouped(self) -> ReceiptGroup:
        queue = self._queue()
        if self._group is None or self._group.queue is not queue:
            self._group = ReceiptGroup(queue)
        return self._group

    async def settled(self) -> None:
        """Wait for the work receipts started in the background."""
        if self._group is not None:
            await self._group.close()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.warning("background work after a receipt failed", exc_info=t.exception())

        task.add_done_callback(done)
