"""Kudosity's (Burst SMS) Transmit SMS API, as the simulator speaks it (facts from the Transmit
SMS OpenAPI description published in github.com/api-evangelist/kudosity, and Burst SMS's API
documentation).

- Auth: HTTP Basic, API key and secret (here: account name, API key).
- `POST /send-sms.json` (form: `message`, `to` in E.164, `from`, `validity`): 200 with
  `{"message_id", "send_at", "recipients", "cost", "sms", "delivery_stats", "error":
  {"code": "SUCCESS", "description": "OK"}}`. There is **no client reference**: sending is not
  idempotent and a message is found again by recipient, text and time. Errors carry
  `error.code`: `AUTH_FAILED` (401), `LEDGER_ERROR` (400, not enough funds),
  `RECIPIENTS_ERROR` / `FIELD_INVALID` (400), `OVER_LIMIT` (429, Retry-After), 5xx.
- `GET /get-balance.json` → `{"balance", "currency"}` (money).
- `GET /get-user-sms-sent.json?start&end` (UTC, "YYYY-MM-DD HH:MM:SS") → `{"messages": [{
  "message_id", "mobile", "message", "send_at", "cost", "sms"}]}`.
- Callbacks (account defaults in the dashboard, unsigned form posts): delivery
  (`message_id`, `mobile`, `datetime`, `status` delivered / soft-bounce / hard-bounce /
  pending) and replies (`message_id` of the message answered, `mobile`, `longcode`,
  `datetime`, `response`, `is_optout`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from services.sms_provider_sim.dialects.base import (
    Dialect,
    Outgoing,
    account_for,
    basic_credentials,
    form,
    refused,
    simulator,
    submit,
)
from services.sms_provider_sim.domain.models import Account, InboundMessage, Message, number

NAME = "kudosity"
router = APIRouter(prefix="/kudosity", tags=["kudosity"])
STAMP = "%Y-%m-%d %H:%M:%S"


def _authenticated(request: Request) -> Account | None:
    user, key = basic_credentials(request.headers.get("authorization")) or (None, None)
    return account_for(simulator(request), NAME, user, key)


def _error(status: int, code: str, description: str, **headers: str) -> JSONResponse:
    body = {"error": {"code": code, "description": description}}
    return JSONResponse(body, status_code=status, headers=headers)


def _stamp(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(UTC).strftime(STAMP)


@router.post("/send-sms.json")
async def send(request: Request) -> Response:
    """Send one SMS."""
    params = dict(parse_qsl((await request.body()).decode(errors="replace")))
    account = _authenticated(request)
    if account is None:
        refused(simulator(request), None)
        return _error(401, "AUTH_FAILED", "Invalid API key or secret")
    fields = {
        "reference": f"transmit-{len(simulator(request).store.submissions)}",
        "to": params.get("to"),
        "from": params.get("from"),
        "body": params.get("message"),
    }
    outcome = await submit(request, account, fields, idempotent=False)
    if outcome is None:
        return Response(status_code=204)  # dropped: nobody receives this
    if outcome.status_code == 429:
        return _error(429, "OVER_LIMIT", "Too many requests", **outcome.headers)
    if outcome.status_code >= 500:
        return _error(503, "INTERNAL_ERROR", "Service unavailable")
    if outcome.status_code == 402:
        return _error(400, "LEDGER_ERROR", "Not enough funds")
    if outcome.status_code == 400:
        wrong = outcome.body.get("field")
        code = "RECIPIENTS_ERROR" if wrong == "to" else "FIELD_INVALID"
        return _error(400, code, f"Invalid {wrong}")
    message = simulator(request).store.messages[outcome.body["id"]]
    return JSONResponse(
        {
            "message_id": message.id,
            "send_at": _stamp(message.accepted_at),
            "recipients": 1,
            "cost": number(message.cost),
            "sms": message.segments,
            "delivery_stats": {"delivered": 0, "pending": 1, "bounced": 0},
            "error": {"code": "SUCCESS", "description": "OK"},
        }
    )


@router.get("/get-balance.json")
async def balance(request: Request) -> Response:
    """The account balance (money)."""
    account = _authenticated(request)
    if account is None:
        return _error(401, "AUTH_FAILED", "Invalid API key or secret")
    return JSONResponse(
        {
            "balance": float(account.balance),
            "currency": account.currency,
            "error": {"code": "SUCCESS", "description": "OK"},
        }
    )


@router.get("/get-user-sms-sent.json")
async def sent(request: Request) -> Response:
    """Messages sent between `start` and `end`, newest first."""
    account = _authenticated(request)
    if account is None:
        return _error(401, "AUTH_FAILED", "Invalid API key or secret")
    start = request.query_params.get("start") or "1970-01-01 00:00:00"
    since = datetime.strptime(start, STAMP).replace(tzinfo=UTC)
    found: list[dict[str, Any]] = [
        {
            "message_id": m.id,
            "mobile": m.to.lstrip("+"),
            "message": m.body,
            "send_at": _stamp(m.accepted_at),
            "cost": number(m.cost),
            "sms": m.segments,
        }
        for m in reversed(list(simulator(request).store.messages.values()))
        if m.account == account.name and datetime.fromisoformat(m.accepted_at) >= since
    ]
    return JSONResponse({"messages": found, "error": {"code": "SUCCESS", "description": "OK"}})


def receipt(account: Account, message: Message) -> Outgoing | None:
    """A delivery callback (form, unsigned)."""
    if account.webhook_url is None:
        return None
    params = {
        "message_id": message.id,
        "mobile": message.to.lstrip("+"),
        "datetime": _stamp(message.updated_at),
        "status": "delivered" if message.status == "delivered" else "hard-bounce",
    }
    return Outgoing(account.webhook_url, message.reference, lambda: form(params))


def inbound(account: Account, reply: InboundMessage, answered: Message | None) -> Outgoing | None:
    """A reply callback (form, unsigned), naming the message it answers."""
    url = account.inbound_url or account.webhook_url
    if url is None:
        return None
    params = {
        "message_id": answered.id if answered else "",
        "mobile": reply.sender.lstrip("+"),
        "longcode": reply.to.lstrip("+"),
        "datetime": _stamp(reply.received_at),
        "response": reply.body,
        "is_optout": "yes" if reply.body.strip().upper() == "STOP" else "no",
    }
    return Outgoing(url, reply.in_reply_to, lambda: form(params))


DIALECT = Dialect(NAME, router, receipt, inbound)
