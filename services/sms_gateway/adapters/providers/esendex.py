"""Esendex's REST API v1.0 (`https://api.esendex.com`), XML.

- Auth: HTTP Basic with the login (an e-mail address) and its password or API token. Both
  live in the sealed `secret` as `<login>:<token>`; `account_id` is the account reference
  (`EX…`) named in every dispatch.
- Send: `POST /v1.0/messagedispatcher` (`<messages><accountreference/><message><to/><from/>
  <body/></message></messages>`); the answer names the message header id. There is **no
  client reference** and the call is not idempotent: an uncertain send is found again in
  `GET /v1.0/messageheaders?startdate&enddate` by recipient, the start of the text
  (`summary`) and time, skipping ids our ledger gives to other messages (as for Twilio).
- Errors: 401 → bad credentials; 403 "Insufficient credits" → no credit, any other 403 (the
  login may not use the reference) → bad credentials; 429 → back off; 5xx → unavailable;
  other 4xx → refused.
- Balance: `GET /v1.0/accounts` → the reference's `messagesremaining` (**credits**: messages).
- Push notifications (`MessageDelivered`, `MessageFailed`, `InboundMessage`; XML, retried for
  72 h) are **unsigned**: the path-secured routes (`path_webhooks`); the account is the path's.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape

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
)
from services.sms_gateway.adapters.providers.calls import attempt, number, read, retry_after, whole
from shared.net.remote import http_detail, log_remote

log = logging.getLogger(__name__)

NAME = "Esendex"
DEFAULT_BASE_URL = "https://api.esendex.com"
MAX_BODY_CHARS = 612  # Esendex's default of four concatenated parts
SUMMARY_CHARS = 50


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_xml(body: bytes) -> ET.Element:
    """An XML document from a provider (no DTDs: nothing is fetched or expanded)."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise BadWebhook("XML with a DTD is refused")
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise BadWebhook(f"not XML: {exc}") from exc


def flat(body: bytes) -> dict[str, str]:
    """A push notification's root name (`_type`) and child elements, namespaces removed."""
    root = parse_xml(body)
    fields = {_local(child.tag): (child.text or "") for child in root}
    return fields | {"_type": _local(root.tag)}


def _find(element: ET.Element, *path: str) -> str | None:
    node: ET.Element | None = element
    for name in path:
        node = next((c for c in node if _local(c.tag) == name), None) if node is not None else None
    return node.text if node is not None else None


def _e164(value: str) -> str:
    return value if value.startswith("+") or not value.isdigit() else f"+{value}"


class EsendexProvider:
    """One Esendex account (`account_id` = account reference, `secret` = `login:token`)."""

    kind = "esendex"
    unit: Unit = "credits"
    max_body_chars = MAX_BODY_CHARS
    max_recipients_per_call = 1
    supports_topup = False
    needs_sender = True

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        account_reference: str,
        login_and_token: str,
        base_url: str | None,
        rate_per_second: float,
    ) -> None:
        login, sep, token = login_and_token.partition(":")
        if not sep:
            raise ValueError("the Esendex secret must be '<login>:<API token>'")
        self._client = client
        self._reference = account_reference
        self._auth = (login, token)
        self._base = f"{(base_url or DEFAULT_BASE_URL).rstrip('/')}/v1.0"
        self.rate_per_second = rate_per_second

    async def send(self, message: Outbound) -> SendReply:
        """POST /v1.0/messagedispatcher."""
        document = (
            f"<?xml version='1.0' encoding='UTF-8'?><messages>"
            f"<accountreference>{escape(self._reference)}</accountreference><message>"
            f"<to>{escape(message.to.lstrip('+'))}</to>"
            f"<from>{escape(message.sender.lstrip('+'))}</from>"
            f"<body>{escape(message.body)}</body></message></messages>"
        )
        call = self._client.post(
            f"{self._base}/messagedispatcher",
            content=document.encode(),
            headers={"Content-Type": "application/xml"},
            auth=self._auth,
        )
        response = await attempt(NAME, call)
        if isinstance(response, SendReply):
            return response
        status = response.status_code
        if status == 200:
            try:
                root = parse_xml(response.content)
            except BadWebhook:
                return SendReply("ambiguous", detail="Esendex answered 200 without XML")
            header = next((c for c in root if _local(c.tag) == "messageheader"), None)
            return SendReply(
                "accepted", provider_message_id=header.get("id") if header is not None else None
            )
        log_remote(log, "Esendex refusal", response.text, status=status)
        detail = http_detail(NAME, status)
        if status == 403 and "credit" in response.text.lower():
            return SendReply("no_credit", detail=f"{detail}: insufficient credits")
        if status in (401, 403):
            return SendReply("bad_credentials", detail=detail)
        if status == 429:
            return SendReply("rate_limited", retry_after=retry_after(response), detail=detail)
        if status >= 500:
            return SendReply("unavailable", retry_after=retry_after(response), detail=detail)
        return SendReply("refused", detail=detail)

    async def lookup(self, message: Outbound, taken: Collection[str] = ()) -> Found:
        """The earliest header with our recipient and text start, since just before we tried,
        that is not already another message's."""
        since = message.submitted_at - timedelta(minutes=1)
        params = {
            "startdate": since.astimezone(UTC).isoformat(),
            "enddate": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
            "count": "200",
        }
        call = self._client.get(f"{self._base}/messageheaders", params=params, auth=self._auth)
        root = _document(await read(NAME, call))
        matches: list[tuple[datetime, ET.Element]] = []
        for header in (c for c in root if _local(c.tag) == "messageheader"):
            try:
                at = datetime.fromisoformat(
                    (_find(header, "submittedat") or "").replace("Z", "+00:00")
                )
            except ValueError:
                continue
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            if (
                _e164(_find(header, "to", "phonenumber") or "") == message.to
                and (_find(header, "summary") or "") == message.body[:SUMMARY_CHARS]
                and at >= since
                and header.get("id") not in taken
            ):
                matches.append((at, header))
        if not matches:
            return Found(False)
        header = min(matches, key=lambda pair: pair[0])[1]
        return Found(True, header.get("id"), whole(_find(header, "parts")))

    async def balance(self) -> Balance:
        """GET /v1.0/accounts: the reference's messages remaining."""
        root = _document(
            await read(NAME, self._client.get(f"{self._base}/accounts", auth=self._auth))
        )
        for account in (c for c in root if _local(c.tag) == "account"):
            if _find(account, "reference") == self._reference:
                left = number(_find(account, "messagesremaining"))
                if left is not None:
                    return Balance(left, "credits")
        raise ProviderError("the Esendex login cannot see this account reference")

    async def topup(self, amount: float) -> Balance:
        """Esendex credit is bought through Esendex, not its API."""
        raise NotImplementedError("Esendex accounts are topped up through Esendex")


def _document(response: httpx.Response) -> ET.Element:
    try:
        return parse_xml(response.content)
    except BadWebhook as exc:
        raise ProviderError(f"Esendex answered {exc}") from exc


# --- push notifications (XML, unsigned; the account is the path's) --------------------------


def _field(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not value:
        raise BadWebhook(f"element {name!r} is missing")
    return str(value)


def _when(data: Mapping[str, Any]) -> datetime:
    try:
        found = datetime.fromisoformat(str(data.get("OccurredAt") or "").replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def parse_receipt(data: Mapping[str, Any], account_id: str) -> Receipt:
    """`MessageDelivered` or `MessageFailed` (matched by the message header id)."""
    kind = data.get("_type")
    if kind not in ("MessageDelivered", "MessageFailed"):
        raise BadWebhook(f"not a delivery notification: {kind!r}")
    return Receipt(
        reference=None,
        provider_message_id=_field(data, "MessageId"),
        delivered=kind == "MessageDelivered",
        raw_status=str(kind),
        error=f"Esendex: {data.get('FailureReason') or 'failed'}"
        if kind == "MessageFailed"
        else None,
        occurred_at=_when(data),
        account_id=account_id,
    )


def parse_inbound(data: Mapping[str, Any], account_id: str) -> Inbound:
    """`InboundMessage`."""
    if data.get("_type") != "InboundMessage":
        raise BadWebhook(f"not an inbound message: {data.get('_type')!r}")
    return Inbound(
        inbound_id=_field(data, "MessageId"),
        from_number=_e164(_field(data, "From")),
        to=_e164(_field(data, "To")),
        body=str(data.get("MessageText") or ""),
        received_at=datetime.now(UTC),
        account_id=account_id,
    )
