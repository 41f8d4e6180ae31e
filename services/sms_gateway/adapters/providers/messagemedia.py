"""MessageMedia's (Sinch) Messages API (`https://api.messagemedia.com/v1`).

- Auth: HTTP Basic with the API key (`account_id`) and secret (`secret`).
- Send: `POST /v1/messages` with one message, `delivery_report: true` and our message id in
  `metadata.stagger_ref` (echoed in delivery reports and in replies to it). 202 accepted;
  400 invalid (number, sender, content), 401/403 credentials, 402 no credit, 429, 5xx.
- Not idempotent. An uncertain send is settled by MessageMedia's Reporting API
  (`GET /v1/reporting/sent_messages?metadata_key=stagger_ref&metadata_value=<id>&start_date…`);
  reports may lag, so "not found" means "cannot tell" until `REPORT_LAG` after the send.
- Balance: `GET /v1/messaging/credits` (prepaid accounts: **credits**, one per part).
  Post-paid accounts have no balance: the provider test then fails and says so.
- Webhooks: JSON delivery reports and replies, **not signed**: they reach the path-secured
  routes (`path_webhooks`); the account is the path's.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from services.sms_gateway.adapters.providers.base import (
    BadWebhook,
    Balance,
    Found,
    Inbound,
    Outbound,
    ProviderError,
    Receipt,
    SendReply,
    Unit,
    json_object,
)
from services.sms_gateway.adapters.providers.calls import attempt, number, read, retry_after, whole
from shared.domain.sender_id import InvalidSenderId, parse_sender_id
from shared.net.remote import http_detail, log_remote

log = logging.getLogger(__name__)

NAME = "MessageMedia"
DEFAULT_BASE_URL = "https://api.messagemedia.com"
MAX_BODY_CHARS = 1600
REF_KEY = "stagger_ref"
REPORT_LAG = timedelta(minutes=2)
FINAL = {
    "delivered": True,
    "expired": False,
    "rejected": False,
    "undeliverable": False,
    "failed": False,
    "cancelled": False,
}
SOURCE_TYPES = {"alpha": "ALPHANUMERIC", "number": "INTERNATIONAL", "short_code": "SHORTCODE"}


def _source_type(sender: str) -> str:
    try:
        return SOURCE_TYPES[parse_sender_id(sender).kind]
    except (InvalidSenderId, ValueError):
        return "INTERNATIONAL"


class MessageMediaProvider:
    """One MessageMedia account (`account_id` = API key, `secret` = API secret)."""

    kind = "messagemedia"
    unit: Unit = "credits"
    max_body_chars = MAX_BODY_CHARS
    max_recipients_per_call = 1
    supports_topup = False
    needs_sender = True

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_key: str,
        api_secret: str,
        base_url: str | None,
        rate_per_second: float,
        report_lag: timedelta = REPORT_LAG,
    ) -> None:
        self._client = client
        self._report_lag = report_lag
        self._auth = (api_key, api_secret)
        self._base = f"{(base_url or DEFAULT_BASE_URL).rstrip('/')}/v1"
        self.rate_per_second = rate_per_second

    async def send(self, message: Outbound) -> SendReply:
        """POST /v1/messages with our id in the metadata."""
        item = {
            "content": message.body,
            "destination_number": message.to,
            "source_number": message.sender,
            "source_number_type": _source_type(message.sender),
            "delivery_report": True,
            "format": "SMS",
            "metadata": {REF_KEY: message.reference},
        }
        call = self._client.post(
            f"{self._base}/messages", json={"messages": [item]}, auth=self._auth
        )
        response = await attempt(NAME, call)
        if isinstance(response, SendReply):
            return response
        status = response.status_code
        if status in (200, 201, 202):
            sent = (json_object(response).get("messages") or [{}])[0]
            return SendReply("accepted", provider_message_id=sent.get("message_id"))
        log_remote(log, "MessageMedia refusal", response.text, status=status)
        detail = http_detail(NAME, status)
        if status in (401, 403):
            return SendReply("bad_credentials", detail=detail)
        if status == 402 or "credit" in str(json_object(response).get("message", "")).lower():
            return SendReply("no_credit", detail=detail)
        if status == 429:
            return SendReply("rate_limited", retry_after=retry_after(response), detail=detail)
        if status >= 500:
            return SendReply("unavailable", retry_after=retry_after(response), detail=detail)
        return SendReply("refused", detail=detail)

    async def lookup(self, message: Outbound, taken: Collection[str] = ()) -> Found:
        """The Reporting API's sent message carrying our id in its metadata."""
        params = {
            "start_date": (message.submitted_at - timedelta(minutes=5)).isoformat(),
            "end_date": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
            "metadata_key": REF_KEY,
            "metadata_value": message.reference,
        }
        call = self._client.get(
            f"{self._base}/reporting/sent_messages", params=params, auth=self._auth
        )
        for record in json_object(await read(NAME, call)).get("data") or []:
            if (
                isinstance(record, dict)
                and (record.get("metadata") or {}).get(REF_KEY) == message.reference
            ):
                return Found(True, record.get("message_id"), whole(record.get("units")))
        if datetime.now(UTC) - message.last_attempt < self._report_lag:
            return Found(None)  # reports may not have caught up with the send yet
        return Found(False)

    async def balance(self) -> Balance:
        """GET /v1/messaging/credits (prepaid accounts)."""
        call = self._client.get(f"{self._base}/messaging/credits", auth=self._auth)
        amount = number(json_object(await read(NAME, call)).get("credits"))
        if amount is None:
            raise ProviderError("MessageMedia reports no credits (a post-paid account?)")
        return Balance(amount, "credits")

    async def topup(self, amount: float) -> Balance:
        """MessageMedia credits are bought in its hub, not through the API."""
        raise NotImplementedError("MessageMedia credits are bought in the MessageMedia hub")


# --- webhooks (JSON, unsigned; the account is the path's) -----------------------------------


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise BadWebhook(f"field {name!r} must be a non-empty string")
    return value


def _when(data: Mapping[str, Any]) -> datetime:
    try:
        found = datetime.fromisoformat(str(data.get("date_received")).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def _reference(data: Mapping[str, Any]) -> str | None:
    metadata = data.get("metadata")
    value = metadata.get(REF_KEY) if isinstance(metadata, dict) else None
    return value if isinstance(value, str) and value else None


def parse_receipt(data: Mapping[str, Any], account_id: str) -> Receipt:
    """A delivery report."""
    status = _text(data, "status")
    error = data.get("error_code")
    return Receipt(
        reference=_reference(data),
        provider_message_id=_text(data, "message_id"),
        delivered=FINAL.get(status.lower()),
        raw_status=status,
        error=f"MessageMedia error {error}" if error else None,
        occurred_at=_when(data),
        account_id=account_id,
    )


def parse_inbound(data: Mapping[str, Any], account_id: str) -> Inbound:
    """A reply (`metadata` of the message it answers is echoed)."""
    content = data.get("content")
    if not isinstance(content, str):
        raise BadWebhook("field 'content' must be a string")
    return Inbound(
        inbound_id=_text(data, "reply_id"),
        from_number=_text(data, "source_number"),
        to=_text(data, "destination_number"),
        body=content,
        received_at=_when(data),
        in_reply_to=_reference(data),
        account_id=account_id,
    )
