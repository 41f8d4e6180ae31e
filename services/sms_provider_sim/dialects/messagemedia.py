"""MessageMedia's (Sinch) Messages API, as the simulator speaks it (facts from MessageMedia's
published SDKs, messages-python-sdk and messages-ruby-sdk: messages, delivery reports, replies,
credits controllers and models).

- Auth: HTTP Basic, API key and secret (here: account name, API key).
- `POST /v1/messages`: JSON `{"messages": [{"content", "destination_number" (E.164),
  "source_number", "source_number_type", "delivery_report": true, "format": "SMS",
  "metadata": {…}}]}` (up to 100, all-or-nothing validation) → 202 `{"messages": [{
  "message_id", "status": "queued", …the request's fields}]}`. Errors: 400 `{"message",
  "details": […]}`, 401/403 credentials, 402 `{"message": "Insufficient credits"}`, 429
  (Retry-After), 5xx. Not idempotent.
- `GET /v1/messaging/credits` → `{"credits": n}` (prepaid accounts).
- `GET /v1/reporting/sent_messages?start_date&end_date&metadata_key&metadata_value` →
  `{"data": [{"message_id", "status", "metadata", "units", "destination_address"}]}`.
- Webhooks: JSON delivery reports (`delivery_report_id`, `message_id`, `status`,
  `metadata`, `vendor_account_id`) and replies (`reply_id`, `message_id` of the message
  answered, `content`, `source_number`, `destination_number`, `metadata` echoed), unsigned.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from services.sms_provider_sim.dialects.base import (
    Dialect,
    Outgoing,
    account_for,
    basic_credentials,
    json_payload,
    refused,
    simulator,
    submit,
)
from services.sms_provider_sim.domain.errors import parse_json
from services.sms_provider_sim.domain.models import Account, InboundMessage, Message

NAME = "messagemedia"
REF_KEY = "stagger_ref"
router = APIRouter(prefix="/messagemedia/v1", tags=["messagemedia"])


def _authenticated(request: Request) -> Account | None:
    user, key = basic_credentials(request.headers.get("authorization")) or (None, None)
    return account_for(simulator(request), NAME, user, key)


def _unauthorized() -> JSONResponse:
    return JSONResponse({"message": "Unauthorized"}, status_code=401)


@router.post("/messages")
async def send(request: Request) -> Response:
    """Send messages (each one a separate send here)."""
    data, error = parse_json(await request.body())
    items = data.get("messages") if isinstance(data, dict) else None
    first = items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}
    reference = (first.get("metadata") or {}).get(REF_KEY)
    account = _authenticated(request)
    if account is None:
        refused(simulator(request), reference)
        return _unauthorized()
    if error is not None or not isinstance(items, list) or not items:
        return JSONResponse({"message": "Invalid request", "details": ["messages"]}, 400)
    answered: list[dict[str, Any]] = []
    for item in items:
        item = item if isinstance(item, dict) else {}
        metadata = item.get("metadata") or {}
        fields = {
            "reference": metadata.get(REF_KEY) or f"none-{secrets.token_hex(4)}",
            "to": item.get("destination_number"),
            "from": item.get("source_number"),
            "body": item.get("content"),
        }
        outcome = await submit(request, account, fields, idempotent=False)
        if outcome is None:
            return Response(status_code=204)  # dropped: nobody receives this
        if outcome.status_code == 429:
            return JSONResponse({"message": "Too Many Requests"}, 429, headers=outcome.headers)
        if outcome.status_code >= 500:
            return JSONResponse({"message": "Service Unavailable"}, 503)
        if outcome.status_code == 402:
            return JSONResponse({"message": "Insufficient credits"}, 402)
        if outcome.status_code == 400:
            field = {"to": "destination_number", "from": "source_number"}.get(
                str(outcome.body.get("field")), "content"
            )
            detail = f"{field}: {outcome.body.get('detail')}"
            return JSONResponse({"message": "Invalid request", "details": [detail]}, 400)
        answered.append(item | {"message_id": outcome.body["id"], "status": "queued"})
    return JSONResponse({"messages": answered}, status_code=202)


@router.get("/messaging/credits")
async def credits(request: Request) -> Response:
    """Prepaid credits left."""
    account = _authenticated(request)
    if account is None:
        return _unauthorized()
    return JSONResponse({"credits": float(account.balance)})


@router.get("/reporting/sent_messages")
async def sent_messages(request: Request) -> Response:
    """Sent messages, filtered by time and one metadata pair."""
    account = _authenticated(request)
    if account is None:
        return _unauthorized()
    q = request.query_params
    start = datetime.fromisoformat(q.get("start_date") or "1970-01-01T00:00:00+00:00")
    key, value = q.get("metadata_key"), q.get("metadata_value")
    found = [
        _record(m)
        for m in simulator(request).store.messages.values()
        if m.account == account.name
        and datetime.fromisoformat(m.accepted_at) >= start
        and (key != REF_KEY or m.reference == value)
    ]
    return JSONResponse({"data": found, "pagination": {"page": 1, "total_count": len(found)}})


def _status(message: Message) -> str:
    return {"accepted": "submitted", "delivered": "delivered", "undelivered": "undeliverable"}[
        message.status
    ]


def _record(message: Message) -> dict[str, Any]:
    return {
        "message_id": message.id,
        "status": _status(message).upper(),
        "metadata": {REF_KEY: message.reference},
        "units": message.segments,
        "destination_address": message.to,
        "timestamp": message.accepted_at,
    }


def receipt(account: Account, message: Message) -> Outgoing | None:
    """A delivery report (JSON, unsigned)."""
    if account.webhook_url is None:
        return None
    report = {
        "callback_url": account.webhook_url,
        "delivery_report_id": f"dr-{secrets.token_hex(8)}",
        "source_number": message.sender,
        "date_received": message.updated_at,
        "status": _status(message),
        "delay": 0,
        "submitted_date": message.accepted_at,
        "original_text": message.body,
        "message_id": message.id,
        "vendor_account_id": {"vendor_id": "MessageMedia", "account_id": account.name},
        "metadata": {REF_KEY: message.reference},
    }
    return Outgoing(account.webhook_url, message.reference, lambda: json_payload(report))


def inbound(account: Account, reply: InboundMessage, answered: Message | None) -> Outgoing | None:
    """A reply (JSON, unsigned), naming the message it answers when there is one."""
    url = account.inbound_url or account.webhook_url
    if url is None:
        return None
    body = {
        "callback_url": url,
        "reply_id": reply.id,
        "message_id": answered.id if answered else None,
        "content": reply.body,
        "date_received": reply.received_at,
        "destination_number": reply.to,
        "source_number": reply.sender,
        "vendor_account_id": {"vendor_id": "MessageMedia", "account_id": account.name},
        "metadata": {REF_KEY: answered.reference} if answered else {},
    }
    return Outgoing(url, reply.in_reply_to, lambda: json_payload(body))


DIALECT = Dialect(NAME, router, receipt, inbound)
