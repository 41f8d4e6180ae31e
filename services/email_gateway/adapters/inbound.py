"""Reading an inbound message: who sent it, what it answers, its attachments, and whether it is
a bounce (a delivery-status notification, RFC 3464) and for which of our messages.

Attachments are only decoded from their transfer encoding (base64, quoted-printable) so their
bytes can be quarantined; nothing here interprets them.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, HeaderParser
from email.utils import getaddresses, parsedate_to_datetime

from services.email_gateway.adapters.composer import message_ids_in
from shared.events.schemas.inbound_email import Bounce

_BODY_TYPES = frozenset({"text/plain", "text/html"})
_REPORT_PARTS = frozenset({"message/delivery-status", "message/rfc822", "text/rfc822-headers"})


@dataclass
class ParsedAttachment:
    """One attachment's declared name and type, and its decoded bytes."""

    filename: str | None
    declared_type: str
    data: bytes


@dataclass
class ParsedInbound:
    """What Stagger records about an inbound message."""

    sender: str | None
    sender_name: str | None
    subject: str
    internet_message_id: str | None
    in_reply_to: list[str]
    references: list[str]
    date: datetime | None
    attachments: list[ParsedAttachment] = field(default_factory=list)
    bounce: Bounce | None = None
    bounce_candidates: list[str] = field(default_factory=list)


def _header(msg: Message, name: str) -> str | None:
    try:
        value = msg.get(name)
    except Exception:  # a malformed header must not stop the intake
        return None
    if value is None:
        return None
    return " ".join(str(value).split())


def _date(msg: Message) -> datetime | None:
    raw = _header(msg, "Date")
    if not raw:
        return None
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse(raw: bytes, *, headers_only: bool = False) -> ParsedInbound:
    """Parse a message fetched from the mailbox."""
    if headers_only:
        msg: Message = BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
    else:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
    senders = getaddresses([_header(msg, "From") or ""])
    name, address = senders[0] if senders else ("", "")
    parsed = ParsedInbound(
        sender=address or None,
        sender_name=name or None,
        subject=_header(msg, "Subject") or "",
        internet_message_id=next(iter(message_ids_in(_header(msg, "Message-ID"))), None),
        in_reply_to=message_ids_in(_header(msg, "In-Reply-To")),
        references=message_ids_in(_header(msg, "References")),
        date=_date(msg),
    )
    if headers_only:
        return parsed
    if msg.get_content_type() == "multipart/report" and (
        str(msg.get_param("report-type", "")).lower() == "delivery-status"
    ):
        parsed.bounce, parsed.bounce_candidates = _dsn(msg)
    parsed.attachments = _attachments(msg, report=parsed.bounce is not None)
    return parsed


def _attachments(msg: Message, *, report: bool) -> list[ParsedAttachment]:
    found: list[ParsedAttachment] = []
    stack: list[Message] = [msg]
    while stack:
        part = stack.pop(0)
        ctype = part.get_content_type()
        if part.is_multipart():
            stack[0:0] = list(part.iter_parts()) if isinstance(part, EmailMessage) else []
            continue
        if report and ctype in _REPORT_PARTS:
            continue  # the bounce's machine-readable parts, not attachments
        if ctype == "message/rfc822":
            # A forwarded message travels whole, as one attachment.
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                data = payload[0].as_bytes()
            else:
                raw = part.get_payload(decode=True)
                data = raw if isinstance(raw, bytes) else b""
            found.append(ParsedAttachment(part.get_filename(), ctype, data))
            continue
        filename = part.get_filename()
        disposition = part.get_content_disposition()
        if filename is None and disposition != "attachment" and ctype in _BODY_TYPES:
            continue  # the message's own text
        decoded = part.get_payload(decode=True)
        found.append(
            ParsedAttachment(filename, ctype, decoded if isinstance(decoded, bytes) else b"")
        )
    return found


def _dsn(msg: Message) -> tuple[Bounce | None, list[str]]:
    """The first recipient's verdict, and the Message-IDs that may name the original."""
    candidates: list[str] = []
    action, status, recipient, diagnostic = "unknown", None, None, None
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            blocks = _status_blocks(part)
            for block in blocks:
                for key in ("Original-Message-ID", "X-Original-Message-ID"):
                    candidates += message_ids_in(block.get(key))
            for block in blocks[1:] or blocks:
                if block.get("Action"):
                    action = str(block.get("Action")).strip().lower()
                    status = _clean(block.get("Status"))
                    recipient = _address(
                        block.get("Final-Recipient") or block.get("Original-Recipient")
                    )
                    diagnostic = _clean(block.get("Diagnostic-Code"))
                    break
        elif ctype == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                candidates += message_ids_in(_header(payload[0], "Message-ID"))
        elif ctype == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            text = raw if isinstance(raw, bytes) else b""
            headers = HeaderParser().parsestr(text.decode("utf-8", "replace"))
            candidates += message_ids_in(headers.get("Message-ID"))
    candidates += message_ids_in(_header(msg, "In-Reply-To"))
    candidates += message_ids_in(_header(msg, "References"))
    unique = list(dict.fromkeys(candidates))
    bounce = Bounce(
        original_message_id=unique[0] if unique else None,
        action=action,
        status=status,
        recipient=recipient,
        diagnostic=diagnostic,
    )
    return bounce, unique


def _status_blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    text = payload if isinstance(payload, str) else ""
    blocks = []
    for chunk in text.replace("\r\n", "\n").split("\n\n"):
        if chunk.strip():
            blocks.append(HeaderParser().parsestr(chunk))
    return blocks


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _address(value: object) -> str | None:
    text = _clean(value)
    if text is None:
        return None
    return text.split(";", 1)[1].strip() if ";" in text else text
