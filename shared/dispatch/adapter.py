"""What a channel (SMTP, an SMS provider) must provide to the delivery engine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from shared.dispatch.queue import Claimed
from shared.events.schemas.ticks import TickIssued
from shared.sites import Site


@dataclass(frozen=True)
class Verdict:
    """Whether a claimed message may go now."""

    kind: Literal["send", "suppress", "defer", "fail"]
    reason: str = ""
    retry_at: datetime | None = None

    @classmethod
    def send(cls) -> Verdict:
        return cls("send")


SEND = Verdict("send")


@dataclass(frozen=True)
class SendResult:
    """What the provider said.

    `retry`: a transient failure (try again after `retry_after` or back-off). `failed`: a
    permanent refusal. `hold`: the account cannot send at all now (e.g. no credits): the message
    goes back to the queue untouched and the account is held until the adapter releases it.
    """

    outcome: Literal["sent", "retry", "failed", "hold"]
    provider_message_id: str | None = None
    error: str | None = None
    retry_after: float | None = None
    provider_response: str | None = None
    segments: int | None = None
    cost: float | None = None
    # When the provider call actually began, if the adapter knows (it may run later than the
    # engine asked for it, e.g. in another process). Spaced sends keep their gap from the
    # provider's answer instead: only that instant is surely after the provider received it.
    began_at: datetime | None = None
    # The account that has the message, when not the one the engine sent it through (an
    # earlier attempt through the site's other account was found there by a lookup).
    account: str | None = None
    # `retry` only: False when nothing was tried (the provider cannot tell yet whether an
    # earlier attempt reached it): the message waits without using one of its attempts.
    attempt_used: bool = True


@dataclass(frozen=True)
class Reconciled:
    """After a crash: did an interrupted send reach the provider? `None` = cannot tell yet."""

    sent: bool | None
    provider_message_id: str | None = None
    detail: str = ""
    account: str | None = None
    """The account that has it (None: the site's own account)."""


@dataclass(frozen=True)
class AccountLimitsSpec:
    """Hard limits of a provider account: minimum spacing, burst, rolling daily cap."""

    interval: timedelta | None = None
    burst: int = 1
    daily_cap: int | None = None


class ChannelAdapter(Protocol):
    """A channel's provider side, used by `DispatchEngine`."""

    channel: Literal["sms", "email"]

    def account_for(self, site: Site) -> str | None:
        """The provider account the site sends through (None: channel off for the site)."""

    def limits_for(self, site: Site) -> AccountLimitsSpec:
        """The account's hard limits."""

    def failover(self, site: Site) -> Site | None:
        """The site as it sends through its standby account while its own is held (None: it
        has none). `account_for` and `limits_for` of the answer name the standby account."""

    async def check(self, claimed: Claimed, site: Site, now: datetime) -> Verdict:
        """Opt-outs, quiet hours and anything else that stops a message before the provider."""

    async def send(self, claimed: Claimed, site: Site) -> SendResult:
        """Hand one message to the provider, with its message id as the provider reference."""

    async def reconcile(self, claimed: Claimed, site: Site) -> Reconciled:
        """Find out whether an interrupted send reached the provider."""

    async def on_tick(self, tick: TickIssued, sites: Sequence[Site]) -> None:
        """Work a tick brings besides sending (email: the receive half of send/receive)."""

    async def account_resumed(self, account: str, site: Site) -> bool:
        """Whether a held account can send again (e.g. credits returned)."""
