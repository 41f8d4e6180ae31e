"""One interface in front of every SMS provider API.

An adapter turns the provider's HTTP API into a few plain answers:

- `send`: one message, with our message id as the provider's reference (or, where the provider
  has no reference field, kept where a lookup can find it). The answer distinguishes what is
  certain (accepted, refused, rate limited, unavailable, not sent at all) from what is not
  (`ambiguous`: the request may have reached the provider; the gateway then looks it up and
  never re-sends blindly).
- `lookup`: did the provider get this message? (`True`/`False`, `None` when it cannot tell).
- `balance` (amount and unit: credits or money), `topup` where the provider supports it, and
  `test` (credentials check + balance).
- limits: `max_body_chars`, `max_recipients_per_call`, the account's `rate_per_second`.

Webhook parsing and signature checks live beside each adapter (`simulator.py`, `twilio.py`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

import httpx

from shared.net.outbound import DestinationRefused

Unit = Literal["credits", "money"]
SendStatus = Literal[
    "accepted",  # the provider took it: it will go out (and be billed)
    "rate_limited",  # 429: nothing stored, try again after `retry_after`
    "unavailable",  # 5xx: nothing stored, try again later
    "not_sent",  # the request never reached the provider (connection refused, DNS)
    "ambiguous",  # no answer: the provider may or may not have it
    "refused",  # a permanent refusal of this message (invalid number, body…)
    "no_credit",  # the account cannot pay for it
    "bad_credentials",  # the account's credentials are refused
    "opted_out",  # the provider/carrier blocks this recipient (e.g. replied STOP to them)
    "destination_refused",  # the provider URL resolves to an address we may not connect to
]


@dataclass(frozen=True)
class Outbound:
    """One SMS to hand to the provider."""

    reference: str
    to: str
    sender: str
    body: str
    submitted_at: datetime
    # When the latest attempt that may have reached the provider began, as far as this
    # replica knows (None: this is the first). Providers whose reports lag count from it.
    attempted_at: datetime | None = None

    @property
    def last_attempt(self) -> datetime:
        """The latest instant an earlier attempt may have reached the provider."""
        return max(self.submitted_at, self.attempted_at or self.submitted_at)


@dataclass(frozen=True)
class SendReply:
    """What the provider answered to one send."""

    status: SendStatus
    provider_message_id: str | None = None
    segments: int | None = None
    cost: float | None = None
    balance: float | None = None
    required: float | None = None
    retry_after: float | None = None
    detail: str = ""
    # When the request was handed to the HTTP client (wall clock, any process): the pace of
    # spaced sends is kept between these instants.
    began_at: datetime | None = None


@dataclass(frozen=True)
class Found:
    """What a lookup learnt: `sent` True/False, or None when the provider cannot tell."""

    sent: bool | None
    provider_message_id: str | None = None
    segments: int | None = None
    cost: float | None = None


@dataclass(frozen=True)
class Balance:
    """An account balance in the provider's unit."""

    amount: float
    unit: Unit
    currency: str | None = None
    postpaid: bool = False
    """Invoiced afterwards: `amount` is nominal (never runs out), not money on the account."""


# Errors raised before a request could reach the provider: sending again is safe.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or {} when it is not one."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def destination_refused_reply(exc: DestinationRefused) -> SendReply:
    """The answer to a send whose provider URL the outbound allow-list refuses."""
    return SendReply("destination_refused", detail=f"the provider URL's host {exc.reason}")


def refused_destination(exc: DestinationRefused) -> ProviderError:
    """A lookup/balance/top-up whose provider URL the outbound allow-list refuses."""
    return ProviderError(f"the provider URL's host {exc.reason}")


class BadWebhook(ValueError):
    """A webhook body that is not what the provider documents."""


class ProviderError(Exception):
    """A provider call that failed (unreachable, refused credentials, unexpected answer)."""

    def __init__(self, message: str, *, credentials: bool = False) -> None:
        super().__init__(message)
        self.credentials = credentials


@dataclass(frozen=True)
class Receipt:
    """A delivery receipt: `delivered` True/False, None for an intermediate status.

    `account_id` is the provider's name of the account it came from (matched with the
    reference or provider id, never either alone)."""

    reference: str | None
    provider_message_id: str | None
    delivered: bool | None
    raw_status: str
    error: str | None
    occurred_at: datetime
    account_id: str | None = None


@dataclass(frozen=True)
class Inbound:
    """A patient's SMS to one of our senders, through the provider account `account_id`."""

    inbound_id: str
    from_number: str
    to: str
    body: str
    received_at: datetime
    in_reply_to: str | None = None
    account_id: str | None = None


class Provider(Protocol):
    """An SMS provider account, as the gateway uses it."""

    kind: str
    unit: Unit
    max_body_chars: int
    max_recipients_per_call: int
    supports_topup: bool
    needs_sender: bool
    rate_per_second: float

    async def send(self, message: Outbound) -> SendReply:
        """Submit one message (never raises for a provider or network failure)."""

    async def lookup(self, message: Outbound, taken: Collection[str] = ()) -> Found:
        """Whether the provider has this message (raises ProviderError if it cannot answer).

        `taken`: provider ids already known to belong to other messages (for providers that
        have no reference field and are searched by content)."""

    async def balance(self) -> Balance:
        """The account's balance (raises ProviderError)."""

    async def topup(self, amount: float) -> Balance:
        """Buy credits; the new balance (raises ProviderError, or NotImplementedError)."""
