"""TNZ's REST API v2.04 (New Zealand; approved short codes), as the simulator speaks it (facts
from TNZ's published Python SDK, tnzapi-python: messaging/requests/sms_api.py,
reports/requests/status.py, reports/dtos/status_dto.py, docs/webhooks.md).

- Auth: `Authorization: Basic <Auth Token>` (the token itself, not user:password; here the
  account's API key).
- `POST /api/v2.04/send/sms`: JSON `{"MessageData": {"Message", "Destinations": [{"Recipient"}],
  "FromNumber", "MessageID", "Reference", "Mode"}}` → `{"Result": "Success", "MessageID"}`;
  the caller may choose the MessageID (we give ours). Errors: `{"Result": "Error",
  "ErrorMessage": […]}` with 400, 401, 402 (no credit, here), 429, 5xx.
- `GET /api/v2.04/get/status/{MessageID}` → `{"Result": "Success", "MessageID", "Status",
  "Count", "Complete", "Success", "Failed", "Price"}`, or 404 `{"Result": "Error",
  "ErrorMessage": ["MessageID not found"]}`.
- `GET /api/v2.04/get/sms/received?TimePeriod=` → `{"Result": "Success", "Messages": […]}`.
- Webhooks (JSON, unsigned, one shape for results and replies): `Sender`, `APIKey`, `Type`,
  `Destination`, `ReceivedID`, `MessageID`, `Status`, `Result`, `Message`, `Price`,
  `SentTimeUTC_RFC3339`.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from services.sms_provider_sim.dialects.base import (
    Dialect,
    Outgoing,
    json_payload,
    refused,
    simulator,
    submit,
)
from services.sms_provider_sim.domain.errors import parse_json
from services.sms_provider_sim.domain.models import Account, InboundMessage, Message, number

NAME = "tnz"
router = APIRouter(prefix="/tnz/api/v2.04", tags=["tnz"])


def _authenticated(request: Request) -> Account | None:
    header = request.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return None
    for account in simulator(request).store.accounts.values():
        if account.dialect == NAME and hmac.compare_digest(
            account.api_key.encode(), token.strip().encode()
        ):
            return account
    return None


def _error(status: int, *messages: str, **headers: str) -> JSONResponse:
    body = {"Result": "Error", "ErrorMessage": list(messages)}
    return JSONResponse(body, status_code=status, headers=headers)


@router.post("/send/sms")
async def send(request: Request) -> Response:
    """Send one SMS to one recipient."""
    data, _ = parse_json(await request.body())
    message = data.get("MessageData") if isinstance(data, dict) else None
    message = message if isinstance(message, dict) else {}
    reference = message.get("MessageID") or None
    account = _authenticated(request)
    if account is None:
        refused(simulator(request), reference)
        return _error(401, "Invalid AuthToken")
    destinations = message.get("Destinations") or [{}]
    fields = {
        "reference": reference or f"tnz-{secrets.token_hex(6)}",
        "to": (destinations[0] or {}).get("Recipient"),
        "from": message.get("FromNumber"),
        "body": message.get("Message"),
    }
    outcome = await submit(request, account, fields, idempotent=False)
    if outcome is None:
        return Response(status_code=204)  # dropped: nobody receives this
    if outcome.status_code == 429:
        return _error(429, "Too many requests", **outcome.headers)
    if outcome.status_code >= 500:
        return _error(503, "Service unavailable")
    if outcome.status_code == 402:
        return _error(402, "Insufficient credit")
    if outcome.status_code == 400:
        return _error(400, f"Invalid {outcome.body.get('field')}")
    return JSONResponse({"Result": "Success", "MessageID": fields["reference"]})


@router.get("/get/status/{message_id}")
async def status(message_id: str, request: Request) -> Response:
    """The status of a message by its MessageID."""
    account = _authenticated(request)
    if account is None:
        return _error(401, "Invalid AuthToken")
    found = simulator(request).store.find_by_reference(account.name, message_id)
    if found is None:
        return _error(404, "MessageID not found")
    done = found.status != "accepted"
    body: dict[str, Any] = {
        "Result": "Success",
        "MessageID": message_id,
        "Status": "Completed" if done else "Pending",
        "Count": 1,
        "Complete": int(done),
        "Success": int(found.status == "delivered"),
        "Failed": int(found.status == "undelivered"),
        "Price": number(found.cost),
    }
    return JSONResponse(body)


@router.get("/get/sms/received")
async def received(request: Request) -> Response:
    """Replies received (here: only a credentials check)."""
    if _authenticated(request) is None:
        return _error(401, "Invalid AuthToken")
    return JSONResponse({"Result": "Success", "Messages": []})


def _payload(account: Account, **fields: object) -> dict[str, object]:
    return {"Version": "2.04", "Sender": account.name, "APIKey": "", "Type": "SMS", **fields}


def receipt(account: Account, message: Message) -> Outgoing | None:
    """A result webhook (JSON, unsigned)."""
    if account.webhook_url is None:
        return None
    delivered = message.status == "delivered"
    body = _payload(
        account,
        Destination=message.to,
        ReceivedID="",
        MessageID=message.reference,
        JobNumber=message.id,
        SentTimeUTC_RFC3339=message.updated_at,
        Status="SUCCESS" if delivered else "FAILED",
        Result="Delivered" if delivered else "Failed",
        Message=message.body,
        Price=number(message.cost),
    )
    return Outgoing(account.webhook_url, message.reference, lambda: json_payload(body))


def inbound(account: Account, reply: InboundMessage, answered: Message | None) -> Outgoing | None:
    """An SMS reply webhook (JSON, unsigned): names the message answered, not our number."""
    url = account.inbound_url or account.webhook_url
    if url is None:
        return None
    body = _payload(
        account,
        Destination=reply.sender,
        ReceivedID=reply.id,
        MessageID=answered.reference if answered else "",
        SentTimeUTC_RFC3339=reply.received_at,
        Status="RECEIVED",
        Result="Received",
        Message=reply.body,
        Price=0,
    )
    return Outgoing(url, reply.in_reply_to, lambda: json_payload(body))


DIALECT = Dialect(NAME, router, receipt, inbound)
