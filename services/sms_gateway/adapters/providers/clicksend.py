"""ClickSend's REST API v3 (`https://rest.clicksend.com/v3`).

- Auth: HTTP Basic with the account's username (`account_id`) and API key (`secret`).
- Send: `POST /v3/sms/send` with one message whose `custom_string` is our message id (ClickSend
  echoes it in receipts and replies). The call is **not idempotent**: an uncertain send is
  settled by `GET /v3/sms/history?q=custom_string:<id>` before anything is sent again.
- A call answers 200 even when its message cannot go: each message carries its own `status`
  (`SUCCESS`, `INSUFFICIENT_CREDIT`, `INVALID_RECIPIENT`, …).
- Balance: `GET /v3/account` → `data.balance`, money in `data._currency.currency_name_short`.
  Top-up buys a package in ClickSend's dashboard (or its auto-recharge): no API here.
- Webhooks (automation rules with a URL action, POST) are **not signed**: they reach an
  unguessable per-account path (`path_webhooks`), optionally from allow-listed addresses only.
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
from shared.net.remote import http_detail, log_remote

log = logging.getLogger(__name__)

NAME = "ClickSend"
DEFAULT_BASE_URL = "https://rest.clicksend.com"
MAX_BODY_CHARS = 1224  # eight concatenated GSM-7 parts (ClickSend's maximum message length)

NO_CREDIT = {"INSUFFICIENT_CREDIT"}
BAD_CREDENTIALS = {"UNAUTHORIZED", "INVALID_CREDENTIALS"}
THROTTLED = {"TOO_MANY_REQUESTS"}
# Receipt status codes: 201 delivered to the handset; 300s failed; 200 only reached the network.
DELIVERED_CODES = {"201": True}


class ClickSendProvider:
    """One ClickSend account (`account_id` = username, `secret` = API key)."""

    kind = "clicksend"
    unit: Unit = "money"
    max_body_chars = MAX_BODY_CHARS
    max_recipients_per_call = 1
    supports_topup = False
    needs_sender = True

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        username: str,
        api_key: str,
        base_url: str | None,
        rate_per_second: float,
    ) -> None:
        self._client = client
        self._auth = (username, api_key)
        self._base = f"{(base_url or DEFAULT_BASE_URL).rstrip('/')}/v3"
        self.rate_per_second = rate_per_second

    async def send(self, message: Outbound) -> SendReply:
        """POST /v3/sms/send with our id as `custom_string`."""
        item = {
            "source": "stagger",
            "from": message.sender,
            "to": message.to,
            "body": message.body,
            "custom_string": message.reference,
        }
        call = self._client.post(
            f"{self._base}/sms/send", json={"messages": [item]}, auth=self._auth
        )
        response = await attempt(NAME, call)
        if isinstance(response, SendReply):
            return response
        body = json_object(response)
        code = str(body.get("response_code") or "")
        status = response.status_code
        if status == 200:
            messages = (body.get("data") or {}).get("messages") or [{}]
            first: dict[str, Any] = messages[0] if isinstance(messages[0], dict) else {}
            outcome = str(first.get("status") or code)
            if outcome == "SUCCESS":
                return SendReply(
                    "accepted",
                    provider_message_id=first.get("message_id"),
                    segments=whole(first.get("message_parts")),
                    cost=number(first.get("message_price")),
                )
            return _refusal(status, outcome, response)
        return _refusal(status, code, response)

    async def lookup(self, message: Outbound, taken: Collection[str] = ()) -> Found:
        """The history entry whose custom_string is our id (sent since just before we tried)."""
        since = int((message.submitted_at - timedelta(minutes=5)).timestamp())
        params = {
            "q": f"custom_string:{message.reference}",
            "date_from": str(since),
            "limit": "100",
        }
        call = self._client.get(f"{self._base}/sms/history", params=params, auth=self._auth)
        body = json_object(await read(NAME, call))
        entries = ((body.get("data") or {}).get("data")) or []
        for entry in entries:
            if isinstance(entry, dict) and entry.get("custom_string") == message.reference:
                return Found(
                    True,
                    entry.get("message_id"),
                    whole(entry.get("message_parts")),
                    number(entry.get("message_price")),
                )
        return Found(False)

    async def balance(self) -> Balance:
        """GET /v3/account: money in the account's currency."""
        call = self._client.get(f"{self._base}/account", auth=self._auth)
        data = json_object(await read(NAME, call)).get("data") or {}
        amount = number(data.get("balance"))
        if amount is None:
            raise ProviderError("ClickSend's account answer has no balance")
        currency = (data.get("_currency") or {}).get("currency_name_short")
        return Balance(amount, "money", currency if isinstance(currency, str) else None)

    async def topup(self, amount: float) -> Balance:
        """ClickSend sells credit in packages through its dashboard or auto-recharge."""
        raise NotImplementedError("ClickSend accounts are recharged in the ClickSend dashboard")


def _refusal(status: int, code: str, response: httpx.Response) -> SendReply:
    log_remote(log, "ClickSend refusal", response.text, status=status)
    detail = http_detail(NAME, status, code or None)
    if status == 401 or code in BAD_CREDENTIALS:
        return SendReply("bad_credentials", detail=detail)
    if code in NO_CREDIT:
        return SendReply("no_credit", detail=detail)
    if status == 429 or code in THROTTLED:
        return SendReply("rate_limited", retry_after=retry_after(response), detail=detail)
    if status >= 500:
        return SendReply("unavailable", retry_after=retry_after(response), detail=detail)
    return SendReply("refused", detail=detail)


# --- webhooks (form posts of automation rules; the account comes from the verified path) ----


def _field(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise BadWebhook(f"form field {name!r} is missing")
    return value


def _instant(form: Mapping[str, str], name: str) -> datetime:
    value = form.get(name) or ""
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def parse_receipt(form: Mapping[str, str], account_id: str) -> Receipt:
    """A delivery receipt rule's POST."""
    code = form.get("status_code") or ""
    delivered = DELIVERED_CODES.get(code)
    if delivered is None and code.startswith("3"):
        delivered = False
    error = form.get("error_code") or None
    return Receipt(
        reference=form.get("custom_string") or None,
        provider_message_id=_field(form, "message_id"),
        delivered=delivered,
        raw_status=f"{form.get('status') or ''} {code}".strip() or "unknown",
        error=f"ClickSend error {error}" if error else None,
        occurred_at=_instant(form, "timestamp"),
        account_id=account_id,
    )


def parse_inbound(form: Mapping[str, str], account_id: str) -> Inbound:
    """An inbound rule's POST (`custom_string` is our id of the message it answers)."""
    return Inbound(
        inbound_id=_field(form, "message_id"),
        from_number=_field(form, "from"),
        to=_field(form, "to"),
        body=form.get("body", ""),
        received_at=_instant(form, "timestamp"),
        in_reply_to=form.get("custom_string") or None,
        account_id=account_id,
    )
