"""Vonage's SMS API (`https://rest.nexmo.com`), settled through the Reports API.

- Auth: `api_key` (`account_id`) and `api_secret` (`secret`) in the form of each send and the
  query of balance calls; HTTP Basic with the same pair for the Reports API.
- Send: `POST /sms/json` (form: from, to without "+", text, client-ref = our message id,
  type=unicode when the body needs UCS-2). Always HTTP 200; each part's `status` says what
  happened ("0" accepted). A long body is split by Vonage: one entry (and id) per part, the
  first part's id is the message's; the cost is the sum of the parts' prices.
- Not idempotent. An uncertain send is settled by the synchronous Reports API
  (`GET https://api.nexmo.com/v2/reports/records?product=SMS&direction=outbound…`, filtered by
  the recipient and the time, matched on `client_ref`). Records can lag behind a send, so a
  message not found there is "cannot tell" until `REPORT_LAG` has passed since it was sent.
- Balance: `GET /account/get-balance` → `value` (money, EUR). Vonage's top-up call only
  repeats an auto-reload transaction: accounts are recharged in Vonage's dashboard.
- Webhooks (form posts to the account's default receipt and inbound URLs) are signed with the
  account's signature secret (`webhook_secret`; choose HMAC-SHA256 in the dashboard), and reach
  the path-secured routes (`path_webhooks`), which check both.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta

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
from shared.domain.segments import count_segments
from shared.net.remote import http_detail, log_remote

log = logging.getLogger(__name__)

NAME = "Vonage"
DEFAULT_REST_URL = "https://rest.nexmo.com"
DEFAULT_API_URL = "https://api.nexmo.com"
MAX_BODY_CHARS = 1600
REPORT_LAG = timedelta(minutes=2)

NO_CREDIT = {"9"}
BAD_CREDENTIALS = {"4", "8", "14"}  # bad credentials, partner account barred, bad signature
THROTTLED = {"1"}
INTERNAL = {"5"}  # may have been stored: looked up before anything is sent again
BARRED = {"7"}  # the recipient is on Vonage's barred list
FINAL = {"delivered": True, "failed": False, "rejected": False, "expired": False}


def signature(secret: str, params: Mapping[str, str]) -> str:
    """Vonage's HMAC-SHA256 signature of webhook parameters (every one but `sig`)."""
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha256)
    for key in sorted(k for k in params if k != "sig"):
        value = params[key].replace("&", "_").replace("=", "_")
        mac.update(f"&{key}={value}".encode())
    return mac.hexdigest()


def verify(params: Mapping[str, str], secret: str, tolerance_seconds: float) -> bool:
    """True when `secret` signed these parameters recently (constant-time comparison)."""
    try:
        stamp = float(params.get("timestamp") or "")
    except ValueError:
        return False
    if abs(time.time() - stamp) > tolerance_seconds:
        return False
    given = (params.get("sig") or "").lower()
    return bool(given) and hmac.compare_digest(signature(secret, params).encode(), given.encode())


def _digits(number_: str) -> str:
    return number_.removeprefix("+")


class VonageProvider:
    """One Vonage account (`account_id` = API key, `secret` = API secret)."""

    kind = "vonage"
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
        report_lag: timedelta = REPORT_LAG,
    ) -> None:
        self._client = client
        self._report_lag = report_lag
        self._key, self._secret = api_key, api_secret
        self._rest = (base_url or DEFAULT_REST_URL).rstrip("/")
        self._api = (base_url or DEFAULT_API_URL).rstrip("/")
        self.rate_per_second = rate_per_second

    async def send(self, message: Outbound) -> SendReply:
        """POST /sms/json with our id as `client-ref`."""
        form = {
            "api_key": self._key,
            "api_secret": self._secret,
            "from": _digits(message.sender),
            "to": _digits(message.to),
            "text": message.body,
            "client-ref": message.reference,
        }
        if count_segments(message.body).encoding != "GSM-7":
            form["type"] = "unicode"
        response = await attempt(NAME, self._client.post(f"{self._rest}/sms/json", data=form))
        if isinstance(response, SendReply):
            return response
        if response.status_code == 429:
            return SendReply("rate_limited", retry_after=retry_after(response), detail="429")
        if response.status_code >= 500:
            return SendReply("unavailable", retry_after=retry_after(response), detail="5xx")
        parts = json_object(response).get("messages") or []
        parts = [p for p in parts if isinstance(p, dict)] or [{}]
        status = str(parts[0].get("status", ""))
        if response.status_code == 200 and all(str(p.get("status")) == "0" for p in parts):
            prices = [number(p.get("message-price")) for p in parts]
            return SendReply(
                "accepted",
                provider_message_id=parts[0].get("message-id"),
                segments=whole(len(parts)),
                cost=sum(p for p in prices if p is not None) if any(prices) else None,
                balance=number(parts[-1].get("remaining-balance")),
            )
        log_remote(log, "Vonage refusal", response.text, status=response.status_code)
        detail = http_detail(NAME, response.status_code, f"status {status}" if status else None)
        if status in BAD_CREDENTIALS or response.status_code == 401:
            return SendReply("bad_credentials", detail=detail)
        if status in NO_CREDIT:
            return SendReply("no_credit", detail=detail)
        if status in THROTTLED:
            return SendReply("rate_limited", retry_after=retry_after(response), detail=detail)
        if status in INTERNAL:
            return SendReply("ambiguous", detail=detail)
        if status in BARRED:
            return SendReply("opted_out", detail=detail)
        return SendReply("refused", detail=detail)

    async def lookup(self, message: Outbound, taken: Collection[str] = ()) -> Found:
        """The Reports API record whose client_ref is our id."""
        start = message.submitted_at - timedelta(minutes=5)
        params = {
            "account_id": self._key,
            "product": "SMS",
            "direction": "outbound",
            "date_start": start.astimezone(UTC).isoformat(),
            "date_end": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
            "to": _digits(message.to),
        }
        call = self._client.get(
            f"{self._api}/v2/reports/records", params=params, auth=(self._key, self._secret)
        )
        records = json_object(await read(NAME, call)).get("records") or []
        for record in records:
            if isinstance(record, dict) and record.get("client_ref") == message.reference:
                return Found(
                    True, record.get("message_id"), None, number(record.get("total_price"))
                )
        if datetime.now(UTC) - message.last_attempt < self._report_lag:
            return Found(None)  # the record may not be there yet
        return Found(False)

    async def balance(self) -> Balance:
        """GET /account/get-balance (euros)."""
        params = {"api_key": self._key, "api_secret": self._secret}
        call = self._client.get(f"{self._rest}/account/get-balance", params=params)
        amount = number(json_object(await read(NAME, call)).get("value"))
        if amount is None:
            raise ProviderError("Vonage's balance answer has no value")
        return Balance(amount, "money", "EUR")

    async def topup(self, amount: float) -> Balance:
        """Vonage's top-up only repeats an auto-reload payment set up in its dashboard."""
        raise NotImplementedError("Vonage accounts are recharged in the Vonage dashboard")


# --- webhooks (signed form posts; the account is the path's, and must match `api-key`) ------


def _field(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise BadWebhook(f"form field {name!r} is missing")
    return value


def _when(form: Mapping[str, str]) -> datetime:
    try:
        return datetime.strptime(form.get("message-timestamp") or "", "%Y-%m-%d %H:%M:%S").replace(
            tzinfo=UTC
        )
    except ValueError:
        return datetime.now(UTC)


def _e164(value: str) -> str:
    return value if value.startswith("+") or not value.isdigit() else f"+{value}"


def parse_receipt(form: Mapping[str, str], account_id: str) -> Receipt:
    """A delivery receipt (one per part for long messages: the first part's settles it)."""
    status = _field(form, "status")
    error = form.get("err-code")
    return Receipt(
        reference=form.get("client-ref") or None,
        provider_message_id=_field(form, "messageId"),
        delivered=FINAL.get(status),
        raw_status=status,
        error=f"Vonage error {error}" if error and error != "0" else None,
        occurred_at=_when(form),
        account_id=account_id,
    )


def parse_inbound(form: Mapping[str, str], account_id: str) -> Inbound:
    """An inbound SMS (`msisdn` is the patient, `to` our number)."""
    return Inbound(
        inbound_id=_field(form, "messageId"),
        from_number=_e164(_field(form, "msisdn")),
        to=_e164(_field(form, "to")),
        body=form.get("text", ""),
        received_at=_when(form),
        account_id=account_id,
    )
