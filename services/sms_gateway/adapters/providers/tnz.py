"""TNZ's REST API v2.04 (`https://api.tnz.co.nz/api/v2.04`): New Zealand's short-code route.

New Zealand requires application-to-person SMS to go out on an approved short code (mobile
numbers as senders are blocked), so NZ sites set their short code as sender ID (enforced by
`shared.domain.sender_id` for region NZ) and TNZ sends from it (`FromNumber`).

- Auth: `Authorization: Basic <Auth Token>` (TNZ's token as it is; `secret`). `account_id` is
  the TNZ sender (API login) the token belongs to: it names the account in webhook paths.
- Send: `POST /send/sms` with `MessageData` (Message, Destinations, FromNumber, and our message
  id as `MessageID`, which TNZ keeps as the message's id).
- An uncertain send is settled by `GET /get/status/<our id>`: found → sent; "MessageID not
  found" → not sent.
- Errors (`Result: Error`, `ErrorMessage`): 401 → bad credentials; 402 or a credit message →
  no credit; 429 → back off; 5xx → unavailable; other 4xx → refused.
- Balance: TNZ accounts are **post-paid** (invoiced): there is no balance. `balance` proves the
  token (`GET /get/sms/received`) and reports `POSTPAID_BALANCE` so the gateway never holds
  for credit on its own; a refusal for credit from TNZ still holds.
- Webhooks (results and SMS replies, one JSON shape) are **unsigned**: the path-secured routes.
  A reply names the message it answers (`MessageID`, our id) but not our short code; the
  route fills in the account's sender when its sites share one.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

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
from services.sms_gateway.adapters.providers.calls import attempt, number, read, retry_after
from shared.domain.sender_id import InvalidSenderId, parse_sender_id
from shared.net.remote import http_detail, log_remote

log = logging.getLogger(__name__)

NAME = "TNZ"
DEFAULT_BASE_URL = "https://api.tnz.co.nz"
MAX_BODY_CHARS = 918  # six concatenated GSM-7 parts
POSTPAID_BALANCE = 1_000_000.0
FINAL = {"SUCCESS": True, "DELIVERED": True, "FAILED": False}


def is_short_code(sender: str) -> bool:
    """Whether `sender` is a short code (the only sender New Zealand's networks accept)."""
    try:
        return parse_sender_id(sender).kind == "short_code"
    except (InvalidSenderId, ValueError):
        return False


class TnzProvider:
    """One TNZ account (`account_id` = TNZ sender, `secret` = Auth Token)."""

    kind = "tnz"
    unit: Unit = "money"
    max_body_chars = MAX_BODY_CHARS
    max_recipients_per_call = 1
    supports_topup = False
    needs_sender = True

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        auth_token: str,
        base_url: str | None,
        rate_per_second: float,
    ) -> None:
        self._client = client
        self._headers = {"Authorization": f"Basic {auth_token}"}
        self._base = f"{(base_url or DEFAULT_BASE_URL).rstrip('/')}/api/v2.04"
        self.rate_per_second = rate_per_second

    async def send(self, message: Outbound) -> SendReply:
        """POST /send/sms with our id as the MessageID (from an NZ short code only)."""
        if not is_short_code(message.sender):
            return SendReply(
                "refused",
                detail="TNZ's New Zealand route sends from an approved short code only (3-6 "
                "digits as the site's sender ID); mobile numbers and names are blocked",
            )
        data = {
            "MessageData": {
                "Message": message.body,
                "Destinations": [{"Recipient": message.to}],
                "FromNumber": message.sender,
                "MessageID": message.reference,
                "Reference": message.reference,
                "Mode": "Live",
            }
        }
        call = self._client.post(f"{self._base}/send/sms", json=data, headers=self._headers)
        response = await attempt(NAME, call)
        if isinstance(response, SendReply):
            return response
        body = json_object(response)
        status = response.status_code
        if status == 200 and body.get("Result") == "Success":
            return SendReply("accepted", provider_message_id=body.get("MessageID"))
        log_remote(log, "TNZ refusal", response.text, status=status)
        detail = http_detail(NAME, status, body.get("Result"))
        said = " ".join(str(e) for e in body.get("ErrorMessage") or []).lower()
        if status == 401 or "authtoken" in said:
            return SendReply("bad_credentials", detail=detail)
        if status == 402 or "credit" in said:
            return SendReply("no_credit", detail=detail)
        if status == 429:
            return SendReply("rate_limited", retry_after=retry_after(response), detail=detail)
        if status >= 500:
            return SendReply("unavailable", retry_after=retry_after(response), detail=detail)
        return SendReply("refused", detail=detail)

    async def lookup(self, message: Outbound, taken: Collection[str] = ()) -> Found:
        """GET /get/status/<our id>."""
        url = f"{self._base}/get/status/{quote(message.reference, safe='')}"
        try:
            response = await self._client.get(url, headers=self._headers)
        except httpx.HTTPError as exc:
            raise ProviderError(f"TNZ unreachable: {type(exc).__name__}") from exc
        said = " ".join(str(e) for e in json_object(response).get("ErrorMessage") or [])
        if response.status_code == 404 or "not found" in said.lower():
            return Found(False)
        if response.status_code >= 300:
            raise ProviderError(
                http_detail(NAME, response.status_code), credentials=response.status_code == 401
            )
        body = json_object(response)
        if body.get("Result") != "Success":
            return Found(None)
        return Found(True, body.get("MessageID"), None, number(body.get("Price")))

    async def balance(self) -> Balance:
        """Post-paid: the token is checked and a nominal balance reported."""
        call = self._client.get(
            f"{self._base}/get/sms/received", params={"TimePeriod": "1"}, headers=self._headers
        )
        await read(NAME, call)
        return Balance(POSTPAID_BALANCE, "money", "NZD", postpaid=True)

    async def topup(self, amount: float) -> Balance:
        """TNZ accounts are invoiced."""
        raise NotImplementedError("TNZ accounts are post-paid (invoiced by TNZ)")


# --- webhooks (JSON, unsigned; the account is the path's) -----------------------------------


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise BadWebhook(f"field {name!r} must be a non-empty string")
    return value


def _when(data: Mapping[str, Any]) -> datetime:
    try:
        found = datetime.fromisoformat(str(data.get("SentTimeUTC_RFC3339")).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def parse_receipt(data: Mapping[str, Any], account_id: str) -> Receipt:
    """A result webhook (`MessageID` is our id)."""
    status = _text(data, "Status")
    delivered = FINAL.get(status.upper())
    return Receipt(
        reference=_text(data, "MessageID"),
        provider_message_id=None,
        delivered=delivered,
        raw_status=f"{status} {data.get('Result') or ''}".strip(),
        error=None if delivered is not False else f"TNZ: {data.get('Result') or status}",
        occurred_at=_when(data),
        account_id=account_id,
    )


def parse_inbound(data: Mapping[str, Any], account_id: str) -> Inbound:
    """An SMS reply (`Destination` is the patient; our short code is not named)."""
    text = data.get("Message")
    if not isinstance(text, str):
        raise BadWebhook("field 'Message' must be a string")
    return Inbound(
        inbound_id=_text(data, "ReceivedID"),
        from_number=_text(data, "Destination"),
        to=str(data.get("To") or ""),
        body=text,
        received_at=_when(data),
        in_reply_to=str(data.get("MessageID") or "") or None,
        account_id=account_id,
    )
