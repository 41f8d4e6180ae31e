"""The SMS provider simulator's API (`docs/sms-provider-simulator.md`).

Sends carry our message id as `reference`, which the simulator treats as an idempotency key
and lets us look up (`GET /v1/messages?reference=`). Balances are credits; top-ups are an API
call. Webhooks (receipts and inbound replies) are JSON signed with HMAC-SHA256 over
"<timestamp>.<raw body>" (`shared.sms_signing`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

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
from shared.sms_signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:8090"
MAX_BODY_CHARS = 1600


def _error_detail(response: httpx.Response) -> str:
    # The status and the simulator's error code only: its body is remote text.
    log_remote(log, "simulator error answer", response.text, status=response.status_code)
    return http_detail("the simulator", response.status_code, json_object(response).get("error"))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class SimulatorProvider:
    """One simulator account (`account_id` = account name, `secret` = API key)."""

    kind = "simulator"
    unit: Unit = "credits"
    max_body_chars = MAX_BODY_CHARS
    max_recipients_per_call = 1
    supports_topup = True
    needs_sender = False

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_key: str,
        base_url: str | None,
        rate_per_second: float,
    ) -> None:
        self._client = client
        self._base = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self.rate_per_second = rate_per_second

    async def send(self, message: Outbound) -> SendReply:
        """POST /v1/messages with our id as `reference`."""
        payload = {
            "reference": message.reference,
            "to": message.to,
            "from": message.sender,
            "body": message.body,
        }
        try:
            response = await self._client.post(
                f"{self._base}/v1/messages", json=payload, headers=self._headers
            )
        except DestinationRefused as exc:
            return destination_refused_reply(exc)
        except NOT_SENT as exc:
            return SendReply("not_sent", detail=f"provider unreachable: {type(exc).__name__}")
        except httpx.HTTPError as exc:
            return SendReply("ambiguous", detail=f"no answer from the provider: {exc!r}"[:300])
        status = response.status_code
        if status in (200, 201):
            body = json_object(response)
            return SendReply(
                "accepted",
                provider_message_id=body.get("id"),
                segments=body.get("segments"),
                cost=body.get("cost"),
                # A duplicate replays the first answer, with the balance of back then.
                balance=None if body.get("duplicate") else body.get("balance"),
            )
        detail = _error_detail(response)
        if status == 402:
            body = json_object(response)
            return SendReply(
                "no_credit",
                balance=body.get("balance"),
                required=body.get("required"),
                detail=detail,
            )
        if status == 429:
            return SendReply("rate_limited", retry_after=_retry_after(response), detail=detail)
        if status == 401:
            return SendReply("bad_credentials", detail="the simulator refused the API key")
        if status >= 500:
            return SendReply("unavailable", retry_after=_retry_after(response), detail=detail)
        return SendReply("refused", detail=detail)

    async def lookup(self, message: Outbound, taken: Collection[str] = ()) -> Found:
        """GET /v1/messages?reference=<our id> (references are unique: `taken` is moot)."""
        response = await self._get("/v1/messages", params={"reference": message.reference})
        if response.status_code == 404:
            return Found(False)
        body = json_object(response)
        return Found(True, body.get("id"), body.get("segments"), body.get("cost"))

    async def balance(self) -> Balance:
        """GET /v1/balance."""
        body = (await self._get("/v1/balance")).json()
        return Balance(float(body["balance"]), "credits")

    async def topup(self, amount: float) -> Balance:
        """POST /v1/topup (whole credits)."""
        try:
            response = await self._client.post(
                f"{self._base}/v1/topup", json={"amount": int(amount)}, headers=self._headers
            )
        except DestinationRefused as exc:
            raise refused_destination(exc) from exc
        except httpx.HTTPError as exc:
            raise ProviderError(f"simulator unreachable: {type(exc).__name__}") from exc
        self._check(response)
        return Balance(float(response.json()["balance"]), "credits")

    async def _get(self, path: str, params: Mapping[str, str] | None = None) -> httpx.Response:
        try:
            response = await self._client.get(
                f"{self._base}{path}", params=params, headers=self._headers
            )
        except DestinationRefused as exc:
            raise refused_destination(exc) from exc
        except httpx.HTTPError as exc:
            raise ProviderError(f"simulator unreachable: {type(exc).__name__}") from exc
        if response.status_code != 404:
            self._check(response)
        return response

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.status_code == 401:
            raise ProviderError("the simulator refused the API key", credentials=True)
        if response.status_code >= 300:
            raise ProviderError(_error_detail(response))


# --- webhooks ------------------------------------------------------------------------------


def verify(
    secrets: list[str], headers: Mapping[str, str], body: bytes, tolerance_seconds: float
) -> bool:
    """True when one of our keys signed this body recently."""
    timestamp = headers.get(TIMESTAMP_HEADER)
    signature = headers.get(SIGNATURE_HEADER)
    return any(
        verify_signature(secret, timestamp, body, signature, tolerance_seconds=tolerance_seconds)
        for secret in secrets
    )


def _text(data: Mapping[str, Any], key: str, *, optional: bool = False) -> str | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise BadWebhook(f"field {key!r} must be a non-empty string")
    return value


def _instant(data: Mapping[str, Any], key: str) -> datetime:
    value = _text(data, key)
    assert value is not None
    try:
        instant = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadWebhook(f"field {key!r} is not an ISO 8601 time") from exc
    if instant.tzinfo is None:
        raise BadWebhook(f"field {key!r} has no time zone")
    return instant


def parse(body: bytes) -> Receipt | Inbound:
    """A receipt or an inbound reply, or BadWebhook saying what is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadWebhook(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadWebhook("not a JSON object")
    kind = data.get("type")
    if kind not in ("receipt", "inbound"):
        raise BadWebhook(f"unknown webhook type {kind!r}")
    # Which account it came through decides whose message or reply it is (tenants never meet).
    account = _text(data, "account")
    if kind == "receipt":
        status = _text(data, "status")
        assert status is not None
        return Receipt(
            reference=_text(data, "reference"),
            provider_message_id=_text(data, "id"),
            delivered={"delivered": True, "undelivered": False}.get(status),
            raw_status=status,
            error=_text(data, "error_code", optional=True),
            occurred_at=_instant(data, "occurred_at"),
            account_id=account,
        )
    body_text = data.get("body")
    if not isinstance(body_text, str):
        raise BadWebhook("field 'body' must be a string")
    inbound_id, sender, to = _text(data, "id"), _text(data, "from"), _text(data, "to")
    assert inbound_id and sender and to
    return Inbound(
        inbound_id=inbound_id,
        from_number=sender,
        to=to,
        body=body_text,
        received_at=_instant(data, "received_at"),
        in_reply_to=_text(data, "in_reply_to", optional=True),
        account_id=account,
    )
