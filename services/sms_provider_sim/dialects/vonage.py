"""Vonage's SMS API (formerly Nexmo), as the simulator speaks it (facts from Vonage's
published SDK, vonage-python-sdk: sms/, account/, http_client/auth.py, and its API reference).

- `POST /sms/json`, form: `api_key`, `api_secret` (here: account name, API key), `from`, `to`
  (digits, no "+"), `text`, `client-ref` (≤ 100 chars, echoed in receipts), `type`. Always
  HTTP 200 with `{"message-count": "<parts>", "messages": [{"status": "0", "message-id",
  "to", "client-ref", "remaining-balance", "message-price", "network"}, …one per part]}`;
  errors carry a non-zero `status` and `error-text` in the first entry: 1 throttled, 3 invalid
  parameters, 4 invalid credentials, 5 internal error, 9 partner quota (no balance), 15 invalid
  sender. Not idempotent. (An HTTP 503 stands for an outage in front of the API.)
- `GET /account/get-balance?api_key&api_secret` → `{"value": 10.28, "autoReload": false}` (EUR).
- `GET /v2/reports/records` (Reports API, synchronous; Basic auth key:secret): `account_id`,
  `product=SMS`, `direction=outbound`, `date_start`, `date_end`, `to` → `{"records": [{
  "message_id", "client_ref", "to", "status", "total_price", "date_received"}]}`.
- Receipts and inbound messages: form posts to the account's URLs, signed when the account
  signs: `timestamp`, `nonce`, `sig` = HMAC-SHA256 (signature secret) of "&key=value" for every
  other parameter sorted by key ("&" and "=" in values replaced by "_"), lowercase hex.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from services.sms_provider_sim.dialects.base import (
    Dialect,
    Outgoing,
    account_for,
    basic_credentials,
    refused,
    simulator,
    submit,
)
from services.sms_provider_sim.domain.models import Account, InboundMessage, Message

NAME = "vonage"
router = APIRouter(prefix="/vonage", tags=["vonage"])


def sign(secret: str, params: dict[str, str]) -> str:
    """Vonage's HMAC-SHA256 webhook signature of `params` (without `sig`)."""
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha256)
    for key in sorted(params):
        value = params[key].replace("&", "_").replace("=", "_")
        mac.update(f"&{key}={value}".encode())
    return mac.hexdigest()


def _e164(value: str | None) -> str | None:
    return f"+{value}" if value and value.isdigit() else value


def _error(status: str, text: str, **headers: str) -> JSONResponse:
    body = {"message-count": "1", "messages": [{"status": status, "error-text": text}]}
    return JSONResponse(body, headers=headers)


@router.post("/sms/json")
async def send(request: Request) -> Response:
    """Send one SMS (split into parts by the provider)."""
    form = dict(parse_qsl((await request.body()).decode(errors="replace"), keep_blank_values=True))
    reference = form.get("client-ref") or None
    account = account_for(simulator(request), NAME, form.get("api_key"), form.get("api_secret"))
    if account is None:
        refused(simulator(request), reference)
        return _error("4", "Bad Credentials")
    fields = {
        "reference": reference or f"none-{secrets.token_hex(4)}",
        "to": _e164(form.get("to")),
        "from": _e164(form.get("from")),
        "body": form.get("text"),
    }
    outcome = await submit(request, account, fields, idempotent=False)
    if outcome is None:
        return Response(status_code=204)  # dropped: nobody receives this
    if outcome.status_code == 429:
        return _error("1", "Throughput Rate Exceeded", **outcome.headers)
    if outcome.status_code >= 500:
        return JSONResponse({"error": "service unavailable"}, status_code=503)
    if outcome.status_code == 402:
        return _error("9", "Partner quota exceeded")
    if outcome.status_code == 400:
        wrong = outcome.body.get("field")
        return _error("15" if wrong == "from" else "3", f"Invalid {wrong or 'request'}")
    message = simulator(request).store.messages[outcome.body["id"]]
    price = message.cost / message.segments
    parts = [
        {
            "to": form.get("to"),
            "message-id": message.id if i == 0 else f"{message.id}-{i}",
            "status": "0",
            "remaining-balance": f"{account.balance:.8f}",
            "message-price": f"{price:.8f}",
            "network": "50501",
            "client-ref": reference,
        }
        for i in range(message.segments)
    ]
    return JSONResponse({"message-count": str(message.segments), "messages": parts})


@router.get("/account/get-balance")
async def balance(request: Request) -> Response:
    """The balance in euros."""
    q = request.query_params
    account = account_for(simulator(request), NAME, q.get("api_key"), q.get("api_secret"))
    if account is None:
        return JSONResponse({"error-code": "401", "error-code-label": "authentication failed"}, 401)
    return JSONResponse({"value": float(account.balance), "autoReload": False})


@router.get("/v2/reports/records")
async def records(request: Request) -> Response:
    """Outbound SMS records of the account (synchronous Reports API)."""
    user, key = basic_credentials(request.headers.get("authorization")) or (None, None)
    account = account_for(simulator(request), NAME, user, key)
    q = request.query_params
    if account is None or q.get("account_id") != user:
        return JSONResponse({"title": "Unauthorized"}, status_code=401)
    start = datetime.fromisoformat(q.get("date_start") or "1970-01-01T00:00:00+00:00")
    to = _e164(q.get("to"))
    found = [
        _record(m)
        for m in simulator(request).store.messages.values()
        if m.account == account.name
        and datetime.fromisoformat(m.accepted_at) >= start
        and (to is None or m.to == to)
    ]
    return JSONResponse({"records": found, "request_status": "SUCCESS"})


def _record(message: Message) -> dict[str, Any]:
    status = {"accepted": "accepted", "delivered": "delivered", "undelivered": "failed"}
    return {
        "message_id": message.id,
        "client_ref": message.reference,
        "to": message.to.lstrip("+"),
        "status": status[message.status],
        "total_price": f"{message.cost:.8f}",
        "date_received": message.accepted_at,
    }


def _signed(account: Account, params: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    params = params | {"timestamp": str(int(time.time())), "nonce": secrets.token_hex(8)}
    params["sig"] = sign(account.webhook_secret, params)
    return urlencode(params).encode(), {"Content-Type": "application/x-www-form-urlencoded"}


def _stamp(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")


def receipt(account: Account, message: Message) -> Outgoing | None:
    """A delivery receipt (signed form)."""
    if account.webhook_url is None:
        return None
    delivered = message.status == "delivered"
    params = {
        "msisdn": message.to.lstrip("+"),
        "to": message.sender.lstrip("+"),
        "network-code": "50501",
        "messageId": message.id,
        "price": f"{message.cost:.8f}",
        "status": "delivered" if delivered else "failed",
        "scts": datetime.fromisoformat(message.updated_at).strftime("%y%m%d%H%M"),
        "err-code": "0" if delivered else "1",
        "api-key": account.name,
        "client-ref": message.reference,
        "message-timestamp": _stamp(message.updated_at),
    }
    return Outgoing(account.webhook_url, message.reference, lambda: _signed(account, params))


def inbound(account: Account, reply: InboundMessage, answered: Message | None) -> Outgoing | None:
    """An inbound SMS (signed form). Vonage does not say which message it answers."""
    url = account.inbound_url or account.webhook_url
    if url is None:
        return None
    params = {
        "msisdn": reply.sender.lstrip("+"),
        "to": reply.to.lstrip("+"),
        "messageId": reply.id,
        "text": reply.body,
        "type": "text",
        "keyword": (reply.body.split() or [""])[0].upper(),
        "api-key": account.name,
        "message-timestamp": _stamp(reply.received_at),
    }
    return Outgoing(url, reply.in_reply_to, lambda: _signed(account, params))


DIALECT = Dialect(NAME, router, receipt, inbound)
