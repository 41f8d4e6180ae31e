"""The gateway's pure parts: composing messages, reading inbound ones, the quarantine."""

from __future__ import annotations

import base64
import email
import email.policy
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.email_gateway.adapters.composer import ComposeError, compose, message_ids_in
from services.email_gateway.adapters.inbound import parse
from services.email_gateway.adapters.quarantine import Quarantine, sniff
from shared.events.schemas.messages import Attachment, MessageAccepted


def _message(**fields: object) -> MessageAccepted:
    data = {
        "message_id": "0191e3c2-1111-7aaa-8bbb-123456789abc",
        "group_id": "g",
        "site_id": "s",
        "channel": "email",
        "to": "pat@example.org",
        "body": "Hello",
        "submitted_at": datetime.now(UTC),
        **fields,
    }
    return MessageAccepted.model_validate(data)


def _parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def test_header_values_cannot_inject_headers() -> None:
    composed = compose(
        _message(subject="Hi\r\nBcc: victim@example.org", body="x"),
        from_address="front@smile.example",
        display_name="Smile\nBcc: other@example.org",
        unsubscribe_url=None,
    )
    parsed = _parsed(composed.data)
    assert parsed["Bcc"] is None
    assert "victim@example.org" in parsed["Subject"]
    assert all(b"\r\nBcc" not in line for line in composed.data.split(b"\r\n\r\n")[:1])


def test_text_is_transported_safely_and_exactly() -> None:
    body = ".\nFrom the desk\n" + "é" * 2000 + "\n" + "x" * 1500 + "\nend  \n"
    composed = compose(
        _message(body=body, subject="Ré: " + "long subject " * 80),
        from_address="front@smile.example",
        display_name=None,
        unsubscribe_url=None,
    )
    assert all(len(line) <= 998 for line in composed.data.split(b"\r\n"))
    assert composed.data.isascii(), "7-bit clean: no 8BITMIME needed"
    parsed = _parsed(composed.data)
    assert parsed.get_content().replace("\r\n", "\n") == body
    assert parsed["Subject"] == "Ré: " + "long subject " * 80


def test_international_addresses_need_smtputf8() -> None:
    composed = compose(
        _message(to="jöe@exämple.org"),
        from_address="front@smile.example",
        display_name="Smile",
        unsubscribe_url=None,
    )
    assert composed.smtputf8 is True
    plain = compose(_message(), from_address="a@b.example", display_name=None, unsubscribe_url=None)
    assert plain.smtputf8 is False


def test_attachments_must_be_valid_base64() -> None:
    bad = Attachment(filename="x.pdf", size=1, content_b64="%%%")
    with pytest.raises(ComposeError):
        compose(
            _message(attachments=[bad]),
            from_address="a@b.example",
            display_name=None,
            unsubscribe_url=None,
        )


def test_message_ids_are_found_in_reference_headers() -> None:
    assert message_ids_in("<a@b> <c.d@e.f>\r\n <g@h>") == ["<a@b>", "<c.d@e.f>", "<g@h>"]
    assert message_ids_in(None) == []


def test_a_delivery_status_notification_names_the_original() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example\r\nSubject: failure\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
        b"--r\r\nContent-Type: text/plain\r\n\r\nsorry\r\n"
        b"--r\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example\r\n\r\n"
        b"Final-Recipient: rfc822; x@example.org\r\nAction: failed\r\nStatus: 5.2.2\r\n"
        b"Diagnostic-Code: smtp; 552 5.2.2 mailbox full\r\n"
        b"--r\r\nContent-Type: message/rfc822\r\n\r\n"
        b"Message-ID: <orig@smile.example>\r\nSubject: Recall\r\n\r\nbody\r\n"
        b"--r--\r\n"
    )
    parsed = parse(raw)
    assert parsed.bounce is not None
    assert (parsed.bounce.action, parsed.bounce.status) == ("failed", "5.2.2")
    assert parsed.bounce.recipient == "x@example.org"
    assert parsed.bounce.original_message_id == "<orig@smile.example>"
    assert "552 5.2.2" in (parsed.bounce.diagnostic or "")
    assert parsed.attachments == []


def test_attachments_are_typed_from_their_bytes(tmp_path: Path) -> None:
    assert sniff(b"%PDF-1.4") == "pdf"
    assert sniff(b"\x89PNG\r\n\x1a\nxxxx") == "png"
    assert sniff(b"\xff\xd8\xff\xe0") == "jpeg"
    assert sniff(b"GIF89a") == "gif"
    assert sniff(b"PK\x03\x04....word/document.xml") == "docx"
    assert sniff(b"PK\x03\x04....") == "zip"
    assert sniff(b"MZ\x90\x00") == "exe"
    assert sniff(b"hello") == "unknown"
    raw = (
        b"From: a@b.example\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b'--b\r\nContent-Type: application/pdf; name="invoice.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(b"MZ\x90\x00 not a pdf at all")
        + b"\r\n--b--\r\n"
    )
    (attachment,) = parse(raw).attachments
    assert attachment.declared_type == "application/pdf" and sniff(attachment.data) == "exe"
    quarantine = Quarantine(tmp_path / "q")
    digest = quarantine.store(attachment.data)
    assert quarantine.store(attachment.data) == digest, "content-addressed: stored once"
    path = quarantine.path(digest)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "q").st_mode) == 0o700
    assert [p.name for p in (tmp_path / "q").iterdir()] == [digest], "no temporary files left"
    with pytest.raises(ValueError, match="sha256"):
        quarantine.path("../../etc/passwd")
