"""Stored records and request bodies of the simulator (pydantic v2)."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.domain.phone import is_e164
from shared.domain.sender_id import InvalidSenderId, parse_sender_id

MessageStatus = Literal["accepted", "delivered", "undelivered"]
SubmissionOutcome = Literal[
    "pending",
    "accepted",
    "duplicate",
    "rejected_429",
    "rejected_5xx",
    "insufficient_credits",
    "invalid",
    "accepted_then_timeout",
    "unauthorized",
]
ACCOUNT_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
# Amounts are Decimal so that fractional per-segment prices never drift like floats would.
Amount = Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=6)]


def now_iso() -> str:
    """The current UTC time as ISO 8601 with microseconds (sortable, unambiguous)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def new_id(prefix: str) -> str:
    """A fresh opaque id; random rather than seeded so that restarts never reuse one."""
    return f"{prefix}{secrets.token_hex(10)}"


def number(value: Decimal) -> int | float:
    """A Decimal as a JSON number: an int when whole, so credits read `998`, not `998.0`."""
    return int(value) if value == value.to_integral_value() else float(value)


def _check_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    return value


# --- stored records -------------------------------------------------------------------------


class AutoTopup(BaseModel):
    """What the account asks its client to do when credits run low (the simulator only reports
    it; the gateway makes the top-up request)."""

    enabled: bool = False
    threshold: Amount = Decimal(100)
    amount: Amount = Decimal(1000)

    def view(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "enabled": self.enabled,
            "threshold": number(self.threshold),
            "amount": number(self.amount),
        }


class Topup(BaseModel):
    """One `POST /v1/topup`, kept so tests can count top-ups."""

    amount: int
    balance_after: Decimal
    at: str


class Account(BaseModel):
    """A provider account: its key, balance, prices, limits and webhook settings."""

    name: str
    api_key: str
    balance: Decimal
    credits_per_segment: Decimal = Decimal(1)
    rate_per_second: float = 50.0
    webhook_url: str | None = None
    webhook_secret: str
    # The provider wire format the account speaks (`dialects`); "sim" is the simulator's own.
    dialect: str = "sim"
    # Where a dialect posts inbound replies when its provider keeps them apart from receipts.
    inbound_url: str | None = None
    currency: str = "AUD"
    auto_topup: AutoTopup = Field(default_factory=AutoTopup)
    undeliverable_prefixes: list[str] = Field(default_factory=lambda: ["+4470000"])
    topups: list[Topup] = Field(default_factory=list)

    def admin_view(self) -> dict[str, Any]:
        """JSON form for the admin API (a dev tool: keys are shown)."""
        return {
            "account": self.name,
            "api_key": self.api_key,
            "credits": number(self.balance),
            "credits_per_segment": number(self.credits_per_segment),
            "rate_per_second": self.rate_per_second,
            "webhook_url": self.webhook_url,
            "webhook_secret": self.webhook_secret,
            "dialect": self.dialect,
            "inbound_url": self.inbound_url,
            "currency": self.currency,
            "auto_topup": self.auto_topup.view(),
            "undeliverable_prefixes": list(self.undeliverable_prefixes),
            "topups": [
                {"amount": t.amount, "balance_after": number(t.balance_after), "at": t.at}
                for t in self.topups
            ],
        }


class Message(BaseModel):
    """An accepted outbound message."""

    id: str
    account: str
    reference: str
    to: str
    sender: str
    body: str
    callback_url: str | None
    segments: int
    encoding: str
    cost: Decimal
    status: MessageStatus = "accepted"
    error_code: str | None = None
    accepted_at: str
    updated_at: str
    # The exact 201 body, replayed (plus "duplicate": true) when the reference comes again.
    response: dict[str, Any]

    def view(self) -> dict[str, Any]:
        """JSON form for `GET /v1/messages...`."""
        return {
            "id": self.id,
            "reference": self.reference,
            "to": self.to,
            "from": self.sender,
            "body": self.body,
            "callback_url": self.callback_url,
            "status": self.status,
            "error_code": self.error_code,
            "segments": self.segments,
            "encoding": self.encoding,
            "cost": number(self.cost),
            "accepted_at": self.accepted_at,
            "updated_at": self.updated_at,
        }

    def admin_view(self) -> dict[str, Any]:
        """JSON form for the admin API: the public view plus the account."""
        return {"account": self.account, **self.view()}


class Submission(BaseModel):
    """One `POST /v1/messages` attempt, recorded on arrival and completed with its outcome."""

    reference: str | None
    account: str | None
    received_at: str
    outcome: SubmissionOutcome = "pending"
    # None while pending, and for accepted_then_timeout: no response ever left the simulator.
    status_code: int | None = None
    message_id: str | None = None


class InboundMessage(BaseModel):
    """A patient's reply injected through the admin API."""

    id: str
    account: str
    sender: str
    to: str
    body: str
    received_at: str
    in_reply_to: str | None

    def payload(self) -> dict[str, Any]:
        """The webhook body."""
        return {
            "type": "inbound",
            "account": self.account,
            "id": self.id,
            "from": self.sender,
            "to": self.to,
            "body": self.body,
            "received_at": self.received_at,
            "in_reply_to": self.in_reply_to,
        }

    def admin_view(self) -> dict[str, Any]:
        """JSON form for the admin API."""
        return {"account": self.account, **self.payload()}


class WebhookAttempt(BaseModel):
    """One HTTP attempt at delivering a webhook (secrets are never recorded)."""

    type: Literal["receipt", "inbound"]
    event_id: str
    reference: str | None
    account: str
    url: str
    attempt: int
    at: str
    status_code: int | None
    error: str | None
    ok: bool


# --- request bodies -------------------------------------------------------------------------


class SendRequest(BaseModel):
    """Body of `POST /v1/messages`. Unknown fields are ignored, as real providers do."""

    model_config = ConfigDict(extra="ignore")

    reference: str = Field(min_length=1, max_length=100)
    to: str
    sender: str = Field(alias="from")
    body: str = Field(min_length=1, max_length=1600)
    callback_url: str | None = Field(default=None, max_length=2000)

    @field_validator("to")
    @classmethod
    def _e164(cls, value: str) -> str:
        if not is_e164(value):
            raise ValueError("must be an E.164 number such as +447700900123")
        return value

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        try:
            parse_sender_id(value)
        except InvalidSenderId as exc:
            raise ValueError(exc.reason) from exc
        return value

    @field_validator("callback_url")
    @classmethod
    def _callback(cls, value: str | None) -> str | None:
        return _check_url(value)


class TopupRequest(BaseModel):
    """Body of `POST /v1/topup`."""

    model_config = ConfigDict(extra="forbid")

    amount: int = Field(gt=0, le=1_000_000_000, strict=True)


class AutoTopupUpdate(BaseModel):
    """Partial update of an account's auto top-up settings."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    threshold: Amount | None = None
    amount: Amount | None = None


class AccountUpdate(BaseModel):
    """Body of `PUT /v1/admin/accounts/{account}`: every field optional (partial update).

    Unknown fields are refused: a typo in a test's account set-up must fail loudly.
    """

    model_config = ConfigDict(extra="forbid")

    api_key: str | None = Field(default=None, min_length=1, max_length=200)
    credits: Amount | None = None
    credits_per_segment: Amount | None = None
    rate_per_second: float | None = Field(default=None, gt=0, le=100_000)
    webhook_url: str | None = Field(default=None, max_length=2000)
    webhook_secret: str | None = Field(default=None, min_length=1, max_length=200)
    dialect: str | None = Field(default=None, pattern=r"^[a-z]{1,20}$")
    inbound_url: str | None = Field(default=None, max_length=2000)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    auto_topup: AutoTopupUpdate | None = None
    undeliverable_prefixes: list[Annotated[str, Field(pattern=r"^\+[0-9]{1,15}$")]] | None = None

    @field_validator("webhook_url", "inbound_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_url(value)


class InboundRequest(BaseModel):
    """Body of `POST /v1/admin/inbound`."""

    model_config = ConfigDict(extra="forbid")

    account: str = Field(min_length=1, max_length=100)
    sender: str = Field(alias="from")
    to: str = Field(min_length=1, max_length=20)
    body: str = Field(max_length=1600)
    in_reply_to: str | None = Field(default=None, min_length=1, max_length=100)

    @field_validator("sender")
    @classmethod
    def _e164(cls, value: str) -> str:
        if not is_e164(value):
            raise ValueError("must be an E.164 number such as +447700900123")
        return value
