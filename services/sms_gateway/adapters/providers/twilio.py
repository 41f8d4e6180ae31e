"""Twilio's Programmable Messaging REST API (2010-04-01), and anything compatible with it.

- Send: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (form: To, From, Body,
  StatusCallback), HTTP Basic auth with the Account SID and Auth Token.
- Twilio's create is **not idempotent** and has no reference field. Our message id travels in
  the StatusCallback URL (`…/webhooks/sms/twilio/status?ref=<id>`), so receipts name it, and an
  uncertain send is looked up in the account's message list (same To, From and body, created
  since the message was submitted, not already another message's) before anything is re-sent.
- Balance: `GET /2010-04-01/Accounts/{AccountSid}/Balance.json` (money, in `currency`).
  Twilio has no top-up API.
- Webhooks are form-encoded and signed with `X-Twilio-Signature`: base64 HMAC-SHA1, keyed with
  the Auth Token, of the full URL Twilio called followed by every POST parameter, sorted by
  name, as name + value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from services.sms_gateway.adapters.providers.base import (
    NOT_SENT,
    BadWebhook,
    Balance,
    Found,
    Inbound,
    Outbound,
    ProviderError,
    Receipt,
    SendReply,
    Unit,
    destination_refused_reply,
    json_object,
    refused_destination,
)
from shared.net.outbound import DestinationRefused
from shared.net.remote import http_detail, log_remote

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.twilio.com"
MAX_BODY_CHARS = 1600
SIGNATURE_HEADER = "X-Twilio-Signature"

# Twilio error codes the gateway acts on (https://www.twilio.com/docs/api/errors).
AUTHENTICATE = 20003
ACCOUNT_NOT_ACTIVE = (10001, 20005, 30002)  # suspended, e.g. the balance reached zero
TOO_MANY_REQUESTS = 20429
UNSUBSCRIBED_RECIPIENT = 21610

DELIVERED = {"delivered": True, "read": True, "undelivered": False, "failed": False}
"""Final statuses of a status callback; the others (queued, sent, …) are progress."""


def signature(auth_token: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """The `X-Twilio-Signature` of a request to `url` with these POST parameters."""
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify(
    auth_token: str, url: str, params: Sequence[tuple[str, str]], header: str | None
) -> bool:
    """True when `header` is Twilio's signature of this request (compared in constant time)."""
    if not header:
        return False
    return hmac.compare_digest(signature(auth_token, url, params).encode(), header.encode())


def _error(response: httpx.Response) -> tuple[int | None, str]:
    # Twilio's numeric code and the HTTP status only: `message` is remote text.
    body = json_object(response)
    code = body.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    log_remote(log, "Twilio error answer", response.text, status=response.status_code)
    return code, http_detail("Twilio", response.status_code, code)


def _segments(value: object) -> int | None:
    # Strings in Twilio's JSON; "0" while a Messaging Service has not yet split the body.
    text = str(value or "")
    return int(text) if text.isdigit() and int(text) > 0 else None


def _price(value: object) -> float | None:
    # Negative strings ("-0.0075") once known, null at creation.
    try:
        return abs(float(value)) if value not in (None, "") else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _when(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


class TwilioProvider:
    """One Twilio account (`account_id` = Account SID, `secret` = Auth Token)."""

    kind = "twilio"
    unit: Unit = "money"
    max_body_chars = MAX_BODY_CHARS
    max_recipients_per_call = 1
    supports_topup = False
    needs_sender = True

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        account_sid: str,
        auth_token: str,
        base_url: str | None,
        rate_per_second: float,
        status_callback: str | None,
    ) -> None:
        self._client = client
        self._sid = account_sid
        self._auth = (account_sid, auth_token)
        self._base = (
            f"{(base_url or DEFAULT_BASE_URL).rstrip('/')}/2010-04-01/Accounts/{quote(account_sid)}"
        )
        self._status_callback = status_callback
        self.rate_per_second = rate_per_second

    def callback_for(self, reference: str) -> str | None:
        """The StatusCallback URL naming our message id."""
        if self._status_callback is None:
            return None
        return f"{self._status_callback}?ref={quote(reference)}"

    async def send(self, message: Outbound) -> SendReply:
        """Create one Message."""
        form = {"To": message.to, "From": message.sender, "Body": message.body}
        callback = self.callback_for(message.reference)
        if callback:
            form["StatusCallback"] = callback
        try:
            response = await self._client.post(
                f"{self._base}/Messages.json", data=form, auth=self._auth
            )
        except DestinationRefused as exc:
            return destination_refused_reply(exc)
        except NOT_SENT as exc:
            return SendReply("not_sent", detail=f"Twilio unreachable: {type(exc).__name__}")
        except httpx.HTTPError as exc:
            return SendReply("ambiguous", detail=f"no answer from Twilio: {exc!r}"[:300])
        if response.status_code in (200, 201):
            body = json_object(response)
            return SendReply(
                "accepted",
                provider_message_id=body.get("sid"),
                segments=_segments(body.get("num_segments")),
                cost=_price(body.get("price")),
            )
        code, detail = _error(response)
        status = response.status_code
        if code in ACCOUNT_NOT_ACTIVE:
            return SendReply("no_credit", detail=detail)
        if code == AUTHENTICATE or status == 401:
            return SendReply("bad_credentials", detail=detail)
        if code == TOO_MANY_REQUESTS or status == 429:
            retry = response.headers.get("Retry-After")
            return SendReply(
                "rate_limited", retry_after=float(retry) if retry else None, detail=detail
            )
        if code == UNSUBSCRIBED_RECIPIENT:
            return SendReply("opted_out", detail=detail)
        if status >= 500:
            return SendReply("unavailable", detail=detail)
        return SendReply("refused", detail=detail)

    async def lookup(self, message: Outbound, taken: Collection[str] = ()) -> Found:
        """Find the message in the account's list: same To, From and body, created after it
        was submitted, and not already known as another message's."""
        since = message.submitted_at - timedelta(minutes=1)
        url: str | None = f"{self._base}/Messages.json"
        params: dict[str, str] | None = {"To": message.to, "From": message.sender, "PageSize": "50"}
        matches: list[tuple[datetime, dict[str, Any]]] = []
        for _page in range(4):
            if url is None:
                break
            body = json_object(await self._get(url, params))
            for item in body.get("messages") or []:
                created = _when(item.get("date_created")) or datetime.now(UTC)
                if (
                    item.get("body") == message.body
                    and created >= since
                    and item.get("sid") not in taken
                ):
                    matches.append((created, item))
            next_uri = body.get("next_page_uri")
            url = f"{self._base.split('/2010-04-01')[0]}{next_uri}" if next_uri else None
            params = None
        if not matches:
            return Found(False)
        matches.sort(key=lambda pair: pair[0])
        item = matches[0][1]
        return Found(
            True, item.get("sid"), _segments(item.get("num_segments")), _price(item.get("price"))
        )

    async def balance(self) -> Balance:
        """The account balance (money)."""
        body = json_object(await self._get(f"{self._base}/Balance.json"))
        try:
            return Balance(float(body["balance"]), "money", body.get("currency"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderError("Twilio's balance answer has no balance") from exc

    async def topup(self, amount: float) -> Balance:
        """Twilio has no top-up API (auto-recharge is set in its console)."""
        raise NotImplementedError("Twilio accounts are recharged in the Twilio console")

    async def _get(self, url: str, params: Mapping[str, str] | None = None) -> httpx.Response:
        try:
            response = await self._client.get(url, params=params, auth=self._auth)
        except DestinationRefused as exc:
            raise refused_destination(exc) from exc
        except httpx.HTTPError as exc:
            raise ProviderError(f"Twilio unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 300:
            code, detail = _error(response)
            raise ProviderError(
                detail, credentials=code == AUTHENTICATE or response.status_code == 401
            )
        return response


# --- webhooks ------------------------------------------------------------------------------


def _field(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise BadWebhook(f"form field {name!r} is missing")
    return value


def parse_status(form: Mapping[str, str], reference: str | None) -> Receipt:
    """A status callback (`MessageStatus` of `MessageSid`); `reference` from our URL."""
    status = form.get("MessageStatus") or form.get("SmsStatus")
    if not status:
        raise BadWebhook("form field 'MessageStatus' is missing")
    error = form.get("ErrorCode") or None
    return Receipt(
        reference=reference,
        provider_message_id=_field(form, "MessageSid"),
        delivered=DELIVERED.get(status),
        raw_status=status,
        error=f"Twilio error {error}" if error else None,
        occurred_at=datetime.now(UTC),
        account_id=_field(form, "AccountSid"),
    )


def parse_inbound(form: Mapping[str, str]) -> Inbound:
    """An incoming message (`MessageSid`, `From`, `To`, `Body`)."""
    return Inbound(
        inbound_id=_field(form, "MessageSid"),
        from_number=_field(form, "From"),
        to=_field(form, "To"),
        body=form.get("Body", ""),
        received_at=datetime.now(UTC),
        account_id=_field(form, "AccountSid"),
    )
