"""In-memory fakes of the SMS gateway's ports: a provider account, the provider registry, the
engine's account limiter and queue, the opt-out log and the ledger."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from typing import Any

from services.sms_gateway.adapters.providers import NotConfigured
from services.sms_gateway.adapters.providers.base import (
    Balance,
    Found,
    Outbound,
    ProviderError,
    SendReply,
    Unit,
)
from shared.domain.reply_attribution import SentMessage
from shared.sites import Site


class FakeSmsProvider:
    """One provider account with a balance: each send costs `per_segment` until it runs out;
    `replies` queued answers are given to the next sends instead."""

    kind = "simulator"
    max_body_chars = 1600
    max_recipients_per_call = 1
    needs_sender = False
    rate_per_second = 10.0

    def __init__(
        self,
        balance: float = 100.0,
        *,
        unit: Unit = "credits",
        per_segment: float = 1.0,
        supports_topup: bool = True,
    ) -> None:
        self.amount = balance
        self.unit: Unit = unit
        self.per_segment = per_segment
        self.supports_topup = supports_topup
        self.replies: list[SendReply] = []
        # Lookups answer "cannot tell" for what they do not find (reports that lag).
        self.reports_lag = False
        self.looked_up: list[Outbound] = []
        # The provider ids each lookup was told belong to other messages.
        self.taken: list[list[str]] = []
        self.sent: dict[str, Outbound] = {}
        self.topups: list[float] = []
        self.balance_calls = 0
        self.unreachable = False

    async def send(self, message: Outbound) -> SendReply:
        """Accept while the balance pays for a segment (or give the next scripted reply)."""
        if self.replies:
            return self.replies.pop(0)
        if self.amount < self.per_segment:
            return SendReply(
                "no_credit", balance=self.amount, required=self.per_segment, detail="no credit"
            )
        self.amount -= self.per_segment
        self.sent[message.reference] = message
        return SendReply(
            "accepted",
            provider_message_id=f"fake-{message.reference}",
            segments=1,
            balance=self.amount,
        )

    async def lookup(self, message: Outbound, taken: Collection[str] = ()) -> Found:
        """Whether a send of this reference was accepted."""
        self.looked_up.append(message)
        self.taken.append(sorted(taken))
        if message.reference in self.sent:
            return Found(True, f"fake-{message.reference}", 1)
        return Found(None) if self.reports_lag else Found(False)

    async def balance(self) -> Balance:
        """The balance now (ProviderError while `unreachable`)."""
        self.balance_calls += 1
        if self.unreachable:
            raise ProviderError("the fake provider is unreachable")
        return Balance(self.amount, self.unit)

    async def topup(self, amount: float) -> Balance:
        """Add `amount` to the balance."""
        if not self.supports_topup:
            raise NotImplementedError("the fake provider cannot top up")
        self.topups.append(amount)
        self.amount += amount
        return Balance(self.amount, self.unit)


class FakeProviders:
    """The provider registry: one fake account for every site (None: not configured)."""

    def __init__(self, provider: FakeSmsProvider | None) -> None:
        self.provider = provider

    def for_site(self, site: Site) -> FakeSmsProvider:
        """The site's provider, or NotConfigured."""
        if self.provider is None:
            raise NotConfigured("no provider in this test")
        return self.provider


@dataclass
class FakeLimits:
    """The engine's account limiter: the held flag with its compare-and-set answer."""

    held: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    async def hold(self, account: str, reason: str, balance: float | None = None) -> bool:
        """Hold; True if it was not held before."""
        self.calls.append(("hold", account))
        if account in self.held:
            return False
        self.held[account] = reason
        return True

    async def release(self, account: str, balance: float | None = None) -> bool:
        """Release; True if it was held."""
        self.calls.append(("release", account))
        return self.held.pop(account, None) is not None


class _NoSession:
    """A session whose transaction does nothing (the fake queue keeps its state in memory)."""

    def begin(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()


@dataclass
class FakeQueue:
    """The engine's queue as receipts and opt-outs use it: messages by (account, id)."""

    sent: dict[tuple[str, str], str] = field(default_factory=dict)
    """(account, message id) → provider message id."""
    settled: dict[str, bool] = field(default_factory=dict)
    suppressed: list[tuple[str, str]] = field(default_factory=list)
    suppressed_categories: list[str | None] = field(default_factory=list)

    async def receipt(
        self,
        *,
        accounts: Collection[str],
        message_id: str | None,
        provider_message_id: str | None,
        delivered: bool,
        **_: Any,
    ) -> str | None:
        """The message id settled, or None when no message of these accounts matches."""
        for (account, mid), pid in self.sent.items():
            if account not in accounts or mid in self.settled:
                continue
            if mid == message_id or (message_id is None and pid == provider_message_id):
                self.settled[mid] = delivered
                return mid
        return None

    @contextlib.asynccontextmanager
    async def db(self) -> AsyncIterator[_NoSession]:
        """The sessions a receipt group commits in: nothing to commit here."""
        yield _NoSession()

    async def settle_receipt(self, session: Any, item: Any) -> str | None:
        """`receipt` as the receipt group calls it, inside its (here empty) transaction."""
        accounts = item.accounts if item.accounts is not None else {a for a, _ in self.sent}
        return await self.receipt(
            accounts=accounts,
            message_id=item.message_id,
            provider_message_id=item.provider_message_id,
            delivered=item.delivered,
        )

    async def suppress_recipient(
        self, group_id: str, recipient: str, reason: str, category: str | None = None
    ) -> list[str]:
        """Record the opt-out (and its category, if it names one); no queued messages here."""
        self.suppressed.append((group_id, recipient))
        self.suppressed_categories.append(category)
        return []


@dataclass
class FakeLedger:
    """The ledger's answers: message states and sent messages."""

    states: dict[str, str] = field(default_factory=dict)
    messages: list[SentMessage] = field(default_factory=list)
    # (recipient as the ledger files it, site id, message id, provider id) of sent messages.
    provider_ids: list[tuple[str, str, str, str]] = field(default_factory=list)

    async def state(
        self, message_id: str | None, provider_message_id: str | None, sites: Collection[str]
    ) -> str | None:
        """The state of a message by our id."""
        return self.states.get(message_id or "") if sites else None

    async def ids_of_others(self, recipient: str, message_id: str, site_id: str) -> list[str]:
        """Provider ids of the other messages filed under `recipient` (the ledger's column:
        the tag once personal fields are sealed)."""
        return [
            pid
            for filed, s, m, pid in self.provider_ids
            if filed == recipient and (s, m) != (site_id, message_id)
        ]

    async def sent_message(self, message_id: str, group_id: str) -> SentMessage | None:
        """The sent message of this id."""
        return next((m for m in self.messages if m.message_id == message_id), None)

    async def last_sent(
        self, group_id: str, recipient: str, accounts: Collection[str], sites: Collection[str]
    ) -> SentMessage | None:
        """The last message sent to the number through one of the accounts."""
        found = [
            m
            for m in self.messages
            if m.recipient == recipient and m.account in accounts and m.site_id in sites
        ]
        return found[-1] if found else None


@dataclass
class FakeOptOuts:
    """The opt-out log: what was appended."""

    outs: list[tuple[str, str, str]] = field(default_factory=list)
    ins: list[tuple[str, str, str]] = field(default_factory=list)

    async def opted_out(self, group_id: str, recipient: str, how: str, **_: Any) -> None:
        self.outs.append((group_id, recipient, how))

    async def opted_in(self, group_id: str, recipient: str, how: str, **_: Any) -> None:
        self.ins.append((group_id, recipient, how))
