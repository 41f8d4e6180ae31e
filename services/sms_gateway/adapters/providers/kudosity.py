"""Kudosity's (Burst SMS) Transmit SMS API (`https://api.transmitsms.com`).

- Auth: HTTP Basic with the API key (`account_id`) and secret (`secret`).
- Send: `POST /send-sms.json` (form: message, to, from). The API has **no reference field**
  and is not idempotent: an uncertain send is found again in the account's sent messages
  (`GET /get-user-sms-sent.json?start&end`) by recipient, text and time, skipping ids that
  already belong to our other messages (`taken`), as for Twilio.
- Answers carry `error.code`: `SUCCESS`; `AUTH_FAILED` → bad credentials; `LEDGER_ERROR` → no
  funds; `OVER_LIMIT` / 429 → back off (2 calls a second by default); `RECIPIENTS_ERROR`,
  `FIELD_INVALID` → refused; 5xx → unavailable.
- Balance: `GET /get-balance.json` → `balance` (money, `currency`). Top-up: in the dashboard.
- Callbacks (the account's default delivery and reply callbacks) are form posts, **unsigned**:
  the path-secured routes (`path_webhooks`). Receipts name the provider's message id only.
"""

from __future__ import annotations

import hashlib
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

NAME = "Transmit SMS"
DEFAULT_BASE_URL = "https://api.transmitsms.com"
MAX_BODY_CHARS = 612  # four concatenated GSM-7 parts, Transmit SMS's documented maximum
STAMP = "%Y-%m-%d %H:%M:%S"
FINAL = {"delivered": True, "hard-bounce": False, "soft-bounce": False}


def _e164(value: str) -> str:
    return value if value.startswith("+") or not value.isdigit() else f"+{value}"


def _when(value: object) -> datetime | None:
    try:
        return datetime.strptime(str(value), STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


class KudosityProvider:
    """One Transmit SMS account (`account_id` = API key, `secret` = API secret)."""

    kind = "kudosity"
    unit: Unit = "money"
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
    ) -> None:
        self._client = client
        self._auth = (api_key, api_secret)
        self._base = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.rate_per_second = rate_per_second

    async def send(self, message: Outbound) -> SendReply:
        """POST /send-sms.json."""
        data = {"message": message.body, "to": message.to, "from": message.sender}
        call = self._client.post(f"{self._base}/send-sms.json", data=data, auth=self._auth)
        response = await attempt(NAME, call)
        if isinstance(response, SendReply):
            return response
        body = json_object(response)
        code = str((body.get("error") or {}).get("code") or "")
        status = response.status_code
        if status == 200 and code == "SUCCESS":
            return SendReply(
                "accepted",
                provider_message_id=str(body.get("message_id") or "") or None,
                segments=whole(body.get("sms")),
                cost=number(body.get("cost")),
            )
        log_remote(log, "Transmit SMS refusal", response.text, status=status)
        detail = http_detail(NAME, status, code or None)
        if status == 401 or code == "AUTH_FAILED":
            return SendReply("bad_credentials", detail=detail)
        if code == "LEDGER_ERROR":
            return SendReply("no_credit", detail=detail)
        if status == 429 or code == "OVER_LIMIT":
            return SendReply("rate_limited", retry_after=retry_after(response), detail=detail)
        if status >= 500:
            return SendReply("unavailable", retry_after=retry_after(response), detail=detail)
        return SendReply("refused", detail=detail)

    async def lookup(self, message: Outbound, taken: Collection[str] = ()) -> Found:
        """The earliest sent message with the same recipient and text, sent since just before
        we tried, that is not already another message's."""
        since = message.submitted_at - timedelta(minutes=1)
        params = {
            "start": since.astimezone(UTC).strftime(STAMP),
            "end": (datetime.now(UTC) + timedelta(minutes=1)).strftime(STAMP),
        }
        call = self._client.get(
            f"{self._base}/get-user-sms-sent.json", params=params, auth=self._auth
        )
        matches: list[tuple[datetime, dict[str, Any]]] = []
        for item in json_object(await read(NAME, call)).get("messages") or []:
            if not isinstance(item, dict):
                continue
            sent_at = _when(item.get("send_at")) or datetime.now(UTC)
            if (
                _e164(str(item.get("mobile") or "")) == message.to
                and item.get("message") == message.body
                and sent_at >= since.replace(microsecond=0)
                and str(item.get("message_id")) not in taken
            ):
                matches.append((sent_at, item))
        if not matches:
            return Found(False)
        item = min(matches, key=lambda pair: pair[0])[1]
        return Found(
            True, str(item["message_id"]), whole(item.get("sms")), number(item.get("cost"))
        )

    async def balance(self) -> Balance:
        """GET /get-balance.json (money)."""
        call = self._client.get(f"{self._base}/get-balance.json", auth=self._auth)
        body = json_object(await read(NAME, call))
        amount = number(body.get("balance"))
        if amount is None:
            raise ProviderError("Transmit SMS's balance answer has no balance")
        currency = body.get("currency")
        return Balance(amount, "money", currency if isinstance(currency, str) else None)

    async def topup(self, amount: float) -> Balance:
        """Transmit SMS accounts are recharged in the dashboard."""
        raise NotImplementedError("Transmit SMS accounts are recharged in the dashboard")


# --- callbacks (form posts, unsigned; the account is the path's) ----------------------------


def _field(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    if not value:
        raise BadWebhook(f"form field {name!r} is missing")
    return str(value)


def parse_receipt(form: Mapping[str, Any], account_id: str) -> Receipt:
    """A delivery callback (matched by the provider's message id)."""
    status = _field(form, "status")
    return Receipt(
        reference=None,
        provider_message_id=_field(form, "message_id"),
        delivered=FINAL.get(status),
        raw_status=status,
        error=None if status == "delivered" else f"Transmit SMS {status}",
        occurred_at=_when(form.get("datetime")) or datetime.now(UTC),
        account_id=account_id,
    )


def parse_inbound(form: Mapping[str, Any], account_id: str) -> Inbound:
    """A reply callback. Replies have no id of their own: one is derived from their fields so
    a repeated callback is recognised."""
    sender, to = _field(form, "mobile"), _field(form, "longcode")
    text = str(form.get("response") or "")
    raw = "\x1f".join(
        (str(form.get("message_id") or ""), sender, to, str(form.get("datetime")), text)
    )
    return Inbound(
        inbound_id="tx-" + hashlib.sha256(raw.encode()).hexdigest()[:24],
        from_number=_e164(sender),
        to=_e164(to),
        body=text,
        received_at=_when(form.get("datetime")) or datetime.now(UTC),
        account_id=account_id,
    )
