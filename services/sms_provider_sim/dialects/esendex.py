"""Esendex's REST API v1.0 (UK), as the simulator speaks it (facts from Esendex's published
API documentation and client libraries: message dispatcher, message headers, accounts, push
notifications).

- Auth: HTTP Basic, username and password/API token (here: account name, API key); the
  account reference (`EX…`, here the account name) is named in each dispatch.
- `POST /v1.0/messagedispatcher`: XML `<messages><accountreference/><message><to/><from/>
  <body/></message></messages>` → 200 `<messageheaders batchid=…><messageheader id=… uri=…/>
  </messageheaders>`. No client reference: not idempotent. Errors: 401, 403 (reference not
  allowed, or "Insufficient credits"), 400, 429 (Retry-After), 5xx.
- `GET /v1.0/accounts` → `<accounts><account id=…><reference/><messagesremaining/>…`.
- `GET /v1.0/messageheaders?startdate&enddate` → `<messageheaders><messageheader id=…>
  <reference/><status/><submittedat/><to><phonenumber/></to><summary/><parts/>…`.
- Push notifications (XML POSTs, unsigned): `MessageDelivered` / `MessageFailed` (`Id`,
  `MessageId`, `AccountId`, `OccurredAt`) and `InboundMessage` (`Id`, `MessageId`,
  `AccountId`, `MessageText`, `From`, `To`).
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from fastapi import APIRouter, Request
from fastapi.responses import Response

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

NAME = "esendex"
NS = "http://api.esendex.com/ns/"
router = APIRouter(prefix="/esendex/v1.0", tags=["esendex"])


def _xml(text: str, status: int = 200, **headers: str) -> Response:
    return Response(text, status_code=status, media_type="application/xml", headers=headers)


def _authenticated(request: Request) -> Account | None:
    user, key = basic_credentials(request.headers.get("authorization")) or (None, None)
    return account_for(simulator(request), NAME, user, key)


def _plus(value: str | None) -> str | None:
    return f"+{value}" if value and value.isdigit() else value


def _account_id(account: Account) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"esendex:{account.name}"))


@router.post("/messagedispatcher")
async def dispatch(request: Request) -> Response:
    """Send one message."""
    account = _authenticated(request)
    if account is None:
        refused(simulator(request), None)
        return _xml("<errors><error>Unauthorised</error></errors>", 401)
    try:
        root = ET.fromstring(await request.body())
    except ET.ParseError:
        return _xml("<errors><error>Invalid XML</error></errors>", 400)
    if (root.findtext("accountreference") or "") != account.name:
        return _xml("<errors><error>Account reference not accessible</error></errors>", 403)
    message = root.find("message")
    fields = {
        "reference": f"esendex-{uuid.uuid4().hex[:12]}",
        "to": _plus(message.findtext("to") if message is not None else None),
        "from": _plus(message.findtext("from") if message is not None else None),
        "body": message.findtext("body") if message is not None else None,
    }
    outcome = await submit(request, account, fields, idempotent=False)
    if outcome is None:
        return Response(status_code=204)  # dropped: nobody receives this
    if outcome.status_code == 429:
        return _xml("<errors><error>Too many requests</error></errors>", 429, **outcome.headers)
    if outcome.status_code >= 500:
        return _xml("<errors><error>Service unavailable</error></errors>", 503)
    if outcome.status_code == 402:
        return _xml("<errors><error>Insufficient credits</error></errors>", 403)
    if outcome.status_code == 400:
        detail = escape(str(outcome.body.get("field")))
        return _xml(f"<errors><error>Invalid {detail}</error></errors>", 400)
    sent_id = outcome.body["id"]
    return _xml(
        f'<messageheaders batchid="{uuid.uuid4()}" xmlns="{NS}">'
        f'<messageheader uri="/v1.0/messageheaders/{sent_id}" id="{sent_id}"/>'
        "</messageheaders>"
    )


@router.get("/accounts")
async def accounts(request: Request) -> Response:
    """The account and the messages it has left."""
    account = _authenticated(request)
    if account is None:
        return _xml("<errors><error>Unauthorised</error></errors>", 401)
    return _xml(
        f'<accounts xmlns="{NS}"><account id="{_account_id(account)}">'
        f"<reference>{escape(account.name)}</reference><label>Stagger</label>"
        f"<type>Professional</type><messagesremaining>{int(account.balance)}"
        "</messagesremaining></account></accounts>"
    )


@router.get("/messageheaders")
async def headers(request: Request) -> Response:
    """Sent messages since `startdate`, newest first."""
    account = _authenticated(request)
    if account is None:
        return _xml("<errors><error>Unauthorised</error></errors>", 401)
    start = request.query_params.get("startdate") or "1970-01-01T00:00:00+00:00"
    since = datetime.fromisoformat(start.replace("Z", "+00:00"))
    items = [
        m
        for m in reversed(list(simulator(request).store.messages.values()))
        if m.account == account.name and datetime.fromisoformat(m.accepted_at) >= since
    ]
    body = "".join(
        f'<messageheader id="{m.id}"><reference>{escape(account.name)}</reference>'
        f"<status>{_status(m)}</status><submittedat>{m.accepted_at}</submittedat>"
        f"<to><phonenumber>{m.to.lstrip('+')}</phonenumber></to>"
        f"<summary>{escape(m.body[:50])}</summary><parts>{m.segments}</parts>"
        "<direction>Outbound</direction></messageheader>"
        for m in items
    )
    return _xml(f'<messageheaders xmlns="{NS}">{body}</messageheaders>')


def _status(message: Message) -> str:
    return {"accepted": "Submitted", "delivered": "Delivered", "undelivered": "Failed"}[
        message.status
    ]


def _push(root: str, parts: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    inner = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in parts.items())
    text = f'<?xml version="1.0" encoding="utf-8"?><{root}>{inner}</{root}>'
    return text.encode(), {"Content-Type": "application/xml"}


def receipt(account: Account, message: Message) -> Outgoing | None:
    """A MessageDelivered or MessageFailed push (unsigned XML)."""
    if account.webhook_url is None:
        return None
    root = "MessageDelivered" if message.status == "delivered" else "MessageFailed"
    parts = {
        "Id": str(uuid.uuid4()),
        "MessageId": message.id,
        "AccountId": _account_id(account),
        "OccurredAt": datetime.fromisoformat(message.updated_at).astimezone(UTC).isoformat(),
    }
    if root == "MessageFailed":
        parts["FailureReason"] = "Undeliverable"
    return Outgoing(account.webhook_url, message.reference, lambda: _push(root, parts))


def inbound(account: Account, reply: InboundMessage, answered: Message | None) -> Outgoing | None:
    """An InboundMessage push (unsigned XML)."""
    url = account.inbound_url or account.webhook_url
    if url is None:
        return None
    parts = {
        "Id": str(uuid.uuid4()),
        "MessageId": reply.id,
        "AccountId": _account_id(account),
        "MessageText": reply.body,
        "From": reply.sender.lstrip("+"),
        "To": reply.to.lstrip("+"),
    }
    return Outgoing(url, reply.in_reply_to, lambda: _push("InboundMessage", parts))


DIALECT = Dialect(NAME, router, receipt, inbound)
