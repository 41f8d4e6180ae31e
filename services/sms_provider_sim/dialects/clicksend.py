"""ClickSend's REST API v3, as the simulator speaks it (facts from ClickSend's published SDK
documentation, clicksend-python: docs/SMSApi.md, SmsMessage.md, AccountApi.md).

- Auth: HTTP Basic, username + API key (here: the account name + its API key).
- `POST /v3/sms/send`: JSON `{"messages": [{"source", "from", "to", "body", "custom_string"}]}`.
  Answers 200 with `{http_code, response_code, response_msg, data: {total_price, total_count,
  queued_count, messages: [{message_id, to, from, body, message_parts, message_price,
  custom_string, status, date, …}], _currency}}`; a message that cannot go has its own status
  (`INSUFFICIENT_CREDIT`, `INVALID_RECIPIENT`, `INVALID_SENDER`) while the call is 200.
  Errors: 401 `UNAUTHORIZED`, 429 `TOO_MANY_REQUESTS` (Retry-After), 5xx. Sending is **not
  idempotent**: every call is a new message, whatever its custom_string.
- `GET /v3/sms/history?q=custom_string:<ref>&date_from=<unix>`: paged history
  (`data.data[]`), each with its `status` and `status_code`.
- `GET /v3/account`: `data.balance` (money, as a string) and `data._currency`.
- Webhooks, configured as automation rules (URL action, POST form), **unsigned**: delivery
  receipts (`message_id`, `status`, `status_code` 201 delivered / 301 failed,
  `custom_string`, `timestamp`, `error_code`, `user_id`, `subaccount_id`) and inbound messages
  (`message_id`, `from`, `to`, `body`, `original_message_id`, `custom_string`, `timestamp`).
"""

from __future__ import annotations

import zlib
from decimal import Decimal
from typing import Any

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
    unix,
)
from services.sms_provider_sim.domain.errors import parse_json
from services.sms_provider_sim.domain.models import Account, InboundMessage, Message, number

NAME = "clicksend"
router = APIRouter(prefix="/clicksend/v3", tags=["clicksend"])


def _answer(http: int, code: str, message: str, data: Any = None, **headers: str) -> JSONResponse:
    body = {"http_code": http, "response_code": code, "response_msg": message, "data": data}
    return JSONResponse(body, status_code=http, headers=headers)


def _user_id(account: Account) -> int:
    # ClickSend names accounts by a number in webhooks; a stable one per simulator account.
    return zlib.crc32(account.name.encode()) % 1_000_000


def _currency(account: Account) -> dict[str, str]:
    return {"currency_name_short": account.currency, "currency_prefix_d": "$"}


def _authenticated(request: Request) -> Account | None:
    user, key = basic_credentials(request.headers.get("authorization")) or (None, None)
    return account_for(simulator(request), NAME, user, key)


def _view(account: Account, message: Message) -> dict[str, Any]:
    status, code = {
        "accepted": ("Sent", "200"),
        "delivered": ("Delivered", "201"),
        "undelivered": ("Failed", "301"),
    }[message.status]
    return {
        "direction": "out",
        "date": unix(message.accepted_at),
        "to": message.to,
        "body": message.body,
        "from": message.sender,
        "schedule": 0,
        "message_id": message.id,
        "message_parts": message.segments,
        "message_price": f"{message.cost:.4f}",
        "custom_string": message.reference,
        "user_id": _user_id(account),
        "subaccount_id": _user_id(account),
        "status": status,
        "status_code": code,
    }


@router.post("/sms/send")
async def send(request: Request) -> Response:
    """Send one message (ClickSend takes a list; each is a separate send here)."""
    data, error = parse_json(await request.body())
    messages = data.get("messages") if isinstance(data, dict) else None
    first = messages[0] if isinstance(messages, list) and messages else {}
    reference = first.get("custom_string") if isinstance(first, dict) else None
    account = _authenticated(request)
    if account is None:
        refused(simulator(request), reference if isinstance(reference, str) else None)
        return _answer(401, "UNAUTHORIZED", "Your credentials are incorrect.")
    if error is not None or not isinstance(messages, list) or not messages:
        return _answer(400, "BAD_REQUEST", "messages is required.")
    results: list[dict[str, Any]] = []
    total = Decimal(0)
    for item in messages:
        item = item if isinstance(item, dict) else {}
        fields = {
            "reference": item.get("custom_string") or "none",
            "to": item.get("to"),
            "from": item.get("from"),
            "body": item.get("body"),
        }
        outcome = await submit(request, account, fields, idempotent=False)
        if outcome is None:
            return Response(status_code=204)  # dropped: nobody receives this
        if outcome.status_code == 429:
            return _answer(429, "TOO_MANY_REQUESTS", "Too many requests.", **outcome.headers)
        if outcome.status_code >= 500:
            return _answer(503, "INTERNAL_ERROR", "Service unavailable.")
        status = "SUCCESS"
        if outcome.status_code == 402:
            status = "INSUFFICIENT_CREDIT"
        elif outcome.status_code == 400:
            wrong = outcome.body.get("field")
            status = "INVALID_SENDER" if wrong == "from" else "INVALID_RECIPIENT"
        entry = {"to": item.get("to"), "body": item.get("body"), "from": item.get("from")}
        entry |= {"custom_string": item.get("custom_string"), "status": status}
        if status == "SUCCESS":
            message = simulator(request).store.messages[outcome.body["id"]]
            entry = _view(account, message) | {"status": "SUCCESS"}
            total += message.cost
        results.append(entry)
    queued = sum(1 for r in results if r["status"] == "SUCCESS")
    data_out = {
        "total_price": number(total),
        "total_count": len(results),
        "queued_count": queued,
        "messages": results,
        "_currency": _currency(account),
    }
    return _answer(200, "SUCCESS", "Messages queued for delivery.", data_out)


@router.get("/sms/history")
async def history(request: Request) -> Response:
    """The account's sent messages; `q=custom_string:<ref>` filters by our reference."""
    account = _authenticated(request)
    if account is None:
        return _answer(401, "UNAUTHORIZED", "Your credentials are incorrect.")
    q = request.query_params.get("q", "")
    wanted = dict(part.split(":", 1) for part in q.split(",") if ":" in part)
    since = int(request.query_params.get("date_from") or 0)
    found = [
        _view(account, m)
        for m in simulator(request).store.messages.values()
        if m.account == account.name
        and unix(m.accepted_at) >= since
        and ("custom_string" not in wanted or m.reference == wanted["custom_string"])
    ]
    limit = max(1, min(int(request.query_params.get("limit") or 10), 100))
    page = max(1, int(request.query_params.get("page") or 1))
    chunk = found[(page - 1) * limit : page * limit]
    last = max(1, -(-len(found) // limit))
    data = {"total": len(found), "per_page": limit, "current_page": page, "last_page": last}
    return _answer(200, "SUCCESS", "Here are your data.", data | {"data": chunk})


@router.get("/account")
async def account_view(request: Request) -> Response:
    """The account and its balance (money)."""
    account = _authenticated(request)
    if account is None:
        return _answer(401, "UNAUTHORIZED", "Your credentials are incorrect.")
    data = {
        "user_id": _user_id(account),
        "username": account.name,
        "balance": f"{account.balance:.4f}",
        "_currency": _currency(account),
    }
    return _answer(200, "SUCCESS", "Here's your account", data)


def receipt(account: Account, message: Message) -> Outgoing | None:
    """A delivery receipt rule's POST (form, unsigned)."""
    if account.webhook_url is None:
        return None
    delivered = message.status == "delivered"
    params = {
        "timestamp_send": unix(message.accepted_at),
        "timestamp": unix(message.updated_at),
        "message_id": message.id,
        "status": "Delivered" if delivered else "Failed",
        "status_code": "201" if delivered else "301",
        "status_text": "Delivered to handset" if delivered else "Undeliverable",
        "error_code": "" if delivered else "301",
        "error_text": "" if delivered else "Undeliverable",
        "custom_string": message.reference,
        "user_id": _user_id(account),
        "subaccount_id": _user_id(account),
        "message_type": "sms",
    }
    return Outgoing(account.webhook_url, message.reference, lambda: form(params))


def inbound(account: Account, reply: InboundMessage, answered: Message | None) -> Outgoing | None:
    """An inbound rule's POST (form, unsigned)."""
    url = account.inbound_url or account.webhook_url
    if url is None:
        return None
    params = {
        "timestamp": unix(reply.received_at),
        "message_id": reply.id,
        "from": reply.sender,
        "to": reply.to,
        "body": reply.body,
        "original_body": answered.body if answered else "",
        "original_message_id": answered.id if answered else "",
        "custom_string": answered.reference if answered else "",
        "user_id": _user_id(account),
        "subaccount_id": _user_id(account),
    }
    return Outgoing(url, reply.in_reply_to, lambda: form(params))


DIALECT = Dialect(NAME, router, receipt, inbound)
